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


# -- Heroku's REDIS_URL and TLS verification -----------------------------------------------------------------------

HEROKU_URL = "rediss://:p4ss@ec2-1-2-3-4.compute-1.amazonaws.com:12345"


def test_redis_url_is_used_when_bot_state_url_is_unset() -> None:
    settings = load_settings({"REDIS_URL": HEROKU_URL})
    assert settings.state.url == HEROKU_URL
    assert "p4ss" not in repr(settings)


def test_bot_state_url_wins_over_redis_url() -> None:
    settings = load_settings({"REDIS_URL": HEROKU_URL, "BOT_STATE_URL": "redis://redis:6379/0"})
    assert settings.state.url == "redis://redis:6379/0"
    # …even the SQLite default written out: BOT_STATE_URL set at all means "this one".
    assert load_settings({"REDIS_URL": HEROKU_URL, "BOT_STATE_URL": "sqlite:///x.db"}).state.url == "sqlite:///x.db"


def test_a_blank_bot_state_url_counts_as_unset() -> None:
    assert load_settings({"REDIS_URL": HEROKU_URL, "BOT_STATE_URL": " "}).state.url == HEROKU_URL


@pytest.mark.parametrize("url", ["sqlite:///x.db", "https://redis.example.com", "redis://h/0?timeout=3"])
def test_redis_url_must_be_a_redis_url_and_is_named_when_refused(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^REDIS_URL: "):
        load_settings({"REDIS_URL": url})


def test_tls_is_verified_by_default() -> None:
    assert "ssl_cert_reqs" not in load_settings({"REDIS_URL": HEROKU_URL}).state.url


def test_tls_verification_is_turned_off_only_when_asked() -> None:
    settings = load_settings({"REDIS_URL": HEROKU_URL, "BOT_STATE_TLS_VERIFY": "false"})
    assert settings.state.url == HEROKU_URL + "?ssl_cert_reqs=none"
    assert "p4ss" not in repr(settings)
    # Not for plain redis:// nor SQLite (nothing to verify), and never over the URL's own choice.
    for url in ("redis://h:6379/0", "sqlite:///x.db", "rediss://h/0?ssl_ca_certs=/ca.pem&ssl_cert_reqs=required"):
        assert load_settings({"BOT_STATE_URL": url, "BOT_STATE_TLS_VERIFY": "false"}).state.url == url
    with pytest.raises(ConfigError, match=r"^BOT_STATE_TLS_VERIFY: expected true \| false"):
        load_settings({"BOT_STATE_TLS_VERIFY": "no"})
