"""The shared-state settings (`BOT_STATE_URL`, `BOT_PROCESSES`): Redis URLs checked at start-up, and the
password never shown."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, load_settings
from bot.state.urls import redact
from tests.doubles import secrets as fake_secrets


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://", "a host is required"),
        ("redis://h:99999/0", "port"),
        ("redis://h/zero", "database number"),
        ("redis://h/0?timeout=3", "unknown option"),
        ("redis://h/0?prefix=a b", "prefix"),
        ("redis://h/0#x", "fragment"),
    ],
)
def test_bad_redis_urls_are_refused_without_showing_the_password(url: str, problem: str) -> None:
    secret = fake_secrets.DEFENDER_CLIENT_SECRET.replace("~", "x")
    with_password = url.replace("redis://", f"redis://:{secret}@")
    with pytest.raises(ConfigError) as caught:
        load_settings({"BOT_STATE_URL": with_password})
    assert problem in str(caught.value)
    assert str(caught.value).startswith("BOT_STATE_URL: ")
    assert secret not in str(caught.value)


def test_settings_never_show_the_redis_password() -> None:
    secret = "hunter2-redis-password"
    settings = load_settings(
        {"BOT_STATE_URL": f"rediss://default:{secret}@redis.example.com:6380/0", "BOT_PROCESSES": "3"}
    )
    assert settings.state.url == f"rediss://default:{secret}@redis.example.com:6380/0"  # the value works as a URL
    assert secret not in repr(settings)
    assert "rediss://default:***@redis.example.com:6380/0" in repr(settings)
    assert settings.state.processes == 3
    assert redact("redis://:p@[::1]:1/0") == "redis://:***@[::1]:1/0"


def test_the_default_needs_no_redis() -> None:
    settings = load_settings({})
    assert settings.state.url == "sqlite:///device-alerts.db"
    assert settings.state.processes == 1
