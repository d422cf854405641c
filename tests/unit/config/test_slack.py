"""Slack settings (`load_slack_settings`, `slack_mode`): tokens, the signing secret, the API URL, the bot's own
settings and the access settings; secrets never shown in an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.access.policy import AccessPolicy
from bot.config import ConfigError, SlackMode, Visibility, load_slack_settings, read_environment, slack_mode
from tests.doubles import secrets as fake_secrets

# -- Slack settings --------------------------------------------------------------------------------------------

BOT_TOKEN = fake_secrets.BOT_TOKEN
APP_TOKEN = fake_secrets.APP_TOKEN
SIGNING = fake_secrets.SIGNING_SECRET


def http_env(**extra: str) -> dict[str, str]:
    return {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING, **extra}


def config_error(mode: SlackMode, env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_slack_settings(mode, env)
    message = str(caught.value)
    for secret in (fake_secrets.MARKER, BOT_TOKEN, APP_TOKEN, SIGNING):
        assert secret not in message
    return message


def test_settings_defaults_for_http() -> None:
    settings = load_slack_settings(SlackMode.HTTP, http_env())
    assert settings.mode is SlackMode.HTTP
    assert settings.bot_token.reveal() == BOT_TOKEN
    assert settings.signing_secret is not None and settings.signing_secret.reveal() == SIGNING
    assert settings.app_token is None
    assert settings.api_url == "https://slack.com/api/"
    assert (settings.port, settings.http_port) == (None, 3000)
    assert settings.visibility is Visibility.IN_CHANNEL
    assert (settings.workers, settings.max_pending, settings.card_alerts) == (16, 256, 10)


def test_settings_never_show_secrets() -> None:
    settings = load_slack_settings(SlackMode.SOCKET, http_env(SLACK_APP_TOKEN=APP_TOKEN))
    for shown in (repr(settings), str(settings), f"{settings}"):
        for secret in (fake_secrets.MARKER, BOT_TOKEN, APP_TOKEN, SIGNING):
            assert secret not in shown
    assert "Secret('***')" in repr(settings)


@pytest.mark.parametrize(
    ("mode", "env", "missing"),
    [
        (SlackMode.HTTP, {}, "SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET: required for http mode"),
        (SlackMode.HTTP, {"SLACK_BOT_TOKEN": BOT_TOKEN}, "SLACK_SIGNING_SECRET: required for http mode"),
        (SlackMode.HTTP, {"SLACK_SIGNING_SECRET": SIGNING, "SLACK_BOT_TOKEN": "  "}, "SLACK_BOT_TOKEN: required"),
        (SlackMode.SOCKET, {}, "SLACK_BOT_TOKEN, SLACK_APP_TOKEN: required for socket mode"),
        (SlackMode.SOCKET, {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING},
         "SLACK_APP_TOKEN: required for socket mode"),
    ],
)  # fmt: skip
def test_settings_name_every_missing_variable(mode: SlackMode, env: dict[str, str], missing: str) -> None:
    assert config_error(mode, env).startswith(missing)


def test_socket_mode_does_not_need_a_signing_secret() -> None:
    env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN}
    settings = load_slack_settings(SlackMode.SOCKET, env)
    assert settings.signing_secret is None
    assert settings.app_token is not None and settings.app_token.reveal() == APP_TOKEN


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        (
            http_env(SLACK_BOT_TOKEN=f"xoxp-user-{fake_secrets.MARKER}"),
            "SLACK_BOT_TOKEN: expected a bot token starting with xoxb-",
        ),
        (http_env(SLACK_BOT_TOKEN=f"xapp-1-{fake_secrets.MARKER}"), "SLACK_BOT_TOKEN: expected a bot token"),
        (
            http_env(SLACK_APP_TOKEN=f"xoxb-{fake_secrets.MARKER}"),
            "SLACK_APP_TOKEN: expected an app-level token starting with xapp-",
        ),
    ],
)
def test_settings_check_token_prefixes(env: dict[str, str], variable: str) -> None:
    assert config_error(SlackMode.HTTP, env).startswith(variable)


def test_rotating_bot_token_prefix_is_accepted() -> None:
    settings = load_slack_settings(SlackMode.HTTP, http_env(SLACK_BOT_TOKEN="xoxe.xoxb-1-abc"))
    assert settings.bot_token.reveal() == "xoxe.xoxb-1-abc"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://slack-gov.com/api", "https://slack-gov.com/api/"),
        ("https://slack.com/api/", "https://slack.com/api/"),
        ("http://127.0.0.1:8000/api/", "http://127.0.0.1:8000/api/"),
        ("http://localhost:9/api", "http://localhost:9/api/"),
    ],
)
def test_api_url_accepted(value: str, expected: str) -> None:
    assert load_slack_settings(SlackMode.HTTP, http_env(SLACK_API_URL=value)).api_url == expected


@pytest.mark.parametrize(
    "value", ["http://slack.com/api", "ftp://slack.com/api", "https://slack.com/api?x=1", "https://", "slack.com"]
)
def test_api_url_refused(value: str) -> None:
    assert config_error(SlackMode.HTTP, http_env(SLACK_API_URL=value)).startswith("SLACK_API_URL: expected an https://")


@pytest.mark.parametrize(
    ("name", "value", "attribute", "expected"),
    [
        ("PORT", "8080", "port", 8080),
        ("PORT", "65535", "port", 65535),
        ("BOT_RESPONSE_VISIBILITY", "EPHEMERAL", "visibility", Visibility.EPHEMERAL),
        ("BOT_WORKERS", "1", "workers", 1),
        ("BOT_WORKERS", "256", "workers", 256),
        ("BOT_MAX_PENDING", "0", "max_pending", 0),
        ("BOT_CARD_ALERTS", "20", "card_alerts", 20),
    ],
)
def test_bot_settings_accepted(name: str, value: str, attribute: str, expected: object) -> None:
    settings = load_slack_settings(SlackMode.HTTP, http_env(**{name: value}))
    assert getattr(settings, attribute) == expected


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("PORT", "0", "a whole number from 1 to 65535"),
        ("PORT", "65536", "a whole number from 1 to 65535"),
        ("PORT", "http", "a whole number from 1 to 65535"),
        ("BOT_WORKERS", "0", "a whole number from 1 to 256"),
        ("BOT_WORKERS", "2.5", "a whole number from 1 to 256"),
        ("BOT_MAX_PENDING", "-1", "a whole number from 0 to 10000"),
        ("BOT_CARD_ALERTS", "21", "a whole number from 1 to 20"),
        ("BOT_RESPONSE_VISIBILITY", "public", "in_channel | ephemeral"),
    ],
)
def test_bot_settings_refused(name: str, value: str, expected: str) -> None:
    assert config_error(SlackMode.HTTP, http_env(**{name: value})) == f"{name}: expected {expected}, got {value!r}"


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        ({"SLACK_APP_TOKEN": APP_TOKEN}, SlackMode.SOCKET),
        ({"SLACK_APP_TOKEN": "  "}, SlackMode.HTTP),
        ({}, SlackMode.HTTP),
        (http_env(), SlackMode.HTTP),
    ],
)
def test_slack_mode_picks_socket_when_an_app_token_is_set(env: dict[str, str], mode: SlackMode) -> None:
    assert slack_mode(env) is mode


def test_slack_mode_reads_the_dotenv_file(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"SLACK_APP_TOKEN={APP_TOKEN}\n")
    assert slack_mode(read_environment({}, dotenv_path=dotenv)) is SlackMode.SOCKET
    assert slack_mode(read_environment({}, dotenv_path=None)) is SlackMode.HTTP


# -- access settings -------------------------------------------------------------------------------------------

BASE = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}


def test_access_settings_default_to_open_with_limits_and_stderr_audit() -> None:
    settings = load_slack_settings(SlackMode.HTTP, BASE)
    assert settings.access.policy == AccessPolicy()
    access = settings.access
    assert (access.user_rate_per_minute, access.channel_rate_per_minute, access.audit_log) == (20, 60, "stderr")


def test_access_settings_are_read(tmp_path: Path) -> None:
    env = {
        **BASE,
        "BOT_ALLOWED_CHANNELS": "C0INCIDENT,dm",
        "BOT_ALLOWED_USERS": "U0ALICE",
        "BOT_ALLOWED_USERGROUPS": "S0SOC",
        "BOT_DEVICE_GROUP_POLICY": "C0INCIDENT=*",
        "BOT_ALLOW_EXTERNAL": "TRUE",
        "BOT_ACCESS_CONTACT": "#soc",
        "BOT_USER_RATE_PER_MINUTE": "5",
        "BOT_CHANNEL_RATE_PER_MINUTE": "0",
        "BOT_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
    }
    settings = load_slack_settings(SlackMode.HTTP, env)
    access = settings.access.policy
    assert (access.channels, access.users, access.usergroups) == ({"C0INCIDENT", "dm"}, {"U0ALICE"}, {"S0SOC"})
    assert (access.allow_external, access.contact, access.groups.configured) == (True, "#soc", True)
    assert (settings.access.user_rate_per_minute, settings.access.channel_rate_per_minute) == (5, 0)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BOT_ALLOWED_CHANNELS", "#incident", "BOT_ALLOWED_CHANNELS: '#incident' is not a Slack channel id"),
        ("BOT_ALLOWED_USERS", "alice", "BOT_ALLOWED_USERS: 'alice' is not a Slack user id"),
        ("BOT_ALLOWED_USERGROUPS", "soc", "BOT_ALLOWED_USERGROUPS: 'soc' is not a Slack usergroup id"),
        ("BOT_DEVICE_GROUP_POLICY", "x=y", "BOT_DEVICE_GROUP_POLICY: rule 1 key 'x' is not a channel id"),
        ("BOT_ALLOW_EXTERNAL", "yes", "BOT_ALLOW_EXTERNAL: expected true | false"),
        ("BOT_USER_RATE_PER_MINUTE", "-1", "BOT_USER_RATE_PER_MINUTE: expected a whole number"),
        ("BOT_AUDIT_LOG", "/no/such/dir/audit.jsonl", "BOT_AUDIT_LOG: expected stderr, off or a path"),
    ],
)
def test_bad_access_settings_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_slack_settings(SlackMode.HTTP, {**BASE, name: value})
    assert str(caught.value).startswith(message), str(caught.value)


# -- the bind address ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "host"),
    [
        (None, "0.0.0.0"),  # noqa: S104 - every interface, as a platform's web process needs
        ("127.0.0.1", "127.0.0.1"),  # behind a reverse proxy on the same host
        ("::", "::"),
        ("::1", "::1"),
        ("localhost", "localhost"),
        ("bot.internal.example.com", "bot.internal.example.com"),
    ],
)
def test_http_host_is_an_address_or_a_host_name(value: str | None, host: str) -> None:
    env = http_env() if value is None else http_env(BOT_HTTP_HOST=value)
    assert load_slack_settings(SlackMode.HTTP, env).host == host


@pytest.mark.parametrize("value", ["http://0.0.0.0", "0.0.0.0:3000", "10.0.0.256", "bad host", "-x.example", "a_b"])
def test_a_bad_http_host_names_the_variable(value: str) -> None:
    message = config_error(SlackMode.HTTP, http_env(BOT_HTTP_HOST=value))
    assert message == f"BOT_HTTP_HOST: expected an IP address or a host name, got {value!r}"
