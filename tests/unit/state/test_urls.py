"""Redis URLs (`BOT_STATE_URL=redis://…`): what `parse_redis_url` reads from them."""

from __future__ import annotations

import pytest

from bot.state.urls import parse_redis_url

# -- URLs ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "client_url", "prefix", "tls", "db"),
    [
        ("redis://127.0.0.1:6379/15", "redis://127.0.0.1:6379/15", "device-alerts", False, 15),
        ("redis://cache.internal", "redis://cache.internal/0", "device-alerts", False, 0),
        (
            "rediss://:pw@redis.example.com:6380/2?prefix=bot-a",
            "rediss://:pw@redis.example.com:6380/2",
            "bot-a",
            True,
            2,
        ),
        ("rediss://u:pw@h:1/0?ssl_cert_reqs=none", "rediss://u:pw@h:1/0?ssl_cert_reqs=none", "device-alerts", True, 0),
    ],
)
def test_redis_urls(url: str, client_url: str, prefix: str, tls: bool, db: int) -> None:
    parsed = parse_redis_url(url)
    assert (parsed.client_url, parsed.prefix, parsed.tls, parsed.db) == (client_url, prefix, tls, db)
