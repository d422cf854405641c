"""The table of variables itself: one entry per name, bounds that hold their defaults, and nothing read beside it."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest

from bot.config import ConfigError, SlackMode, load_settings, load_slack_settings
from bot.config.kinds import External, Integer, Number, SecretText
from bot.config.variables import VARIABLES
from tests.doubles import secrets as fake_secrets

API_ENV = {
    "DEFENDER_TENANT_ID": "11111111-2222-3333-4444-555555555555",
    "DEFENDER_CLIENT_ID": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    "DEFENDER_CLIENT_SECRET": fake_secrets.DEFENDER_CLIENT_SECRET,
}
SLACK_ENV = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}


class Recording(dict[str, str]):
    """An environment that notes every name asked for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)


def test_names_are_unique() -> None:
    names = [v.name for v in VARIABLES]
    assert len(names) == len(set(names))


def test_the_loaders_read_exactly_the_table() -> None:
    env = Recording({**API_ENV, **SLACK_ENV})
    load_settings(env)
    load_slack_settings(SlackMode.HTTP, env)
    read_by_config = {v.name for v in VARIABLES if not isinstance(v, External)}
    assert env.asked == read_by_config


@pytest.mark.parametrize("variable", [v for v in VARIABLES if isinstance(v, Integer | Number)], ids=lambda v: v.name)
def test_defaults_lie_within_the_bounds(variable: Integer | Number) -> None:
    if variable.default is not None:
        assert variable.minimum <= variable.default <= variable.maximum


@pytest.mark.parametrize("variable", [v for v in VARIABLES if isinstance(v, Integer | Number)], ids=lambda v: v.name)
def test_a_range_in_the_meaning_is_the_range_enforced(variable: Integer | Number) -> None:
    for low, high in re.findall(r"`([\d.]+)`–`([\d.]+)`", variable.meaning):
        assert (float(low), float(high)) == (variable.minimum, variable.maximum)


@pytest.mark.parametrize("variable", [v for v in VARIABLES if v.secret], ids=lambda v: v.name)
def test_secrets_are_never_repeated_in_their_errors(variable: SecretText) -> None:
    value = f"wrong-{fake_secrets.MARKER}"
    env = {**API_ENV, **SLACK_ENV, variable.name: value}
    messages = []
    for load in (lambda: load_settings(env), lambda: load_slack_settings(SlackMode.HTTP, env)):
        try:
            load()
        except ConfigError as exc:
            messages.append(str(exc))
    assert not [message for message in messages if fake_secrets.MARKER in message]


@pytest.mark.parametrize("name", ["BOT_TEST_WATCH_POLL_SECONDS", "DEFENDER_SIMULATOR_URL"])
def test_test_knobs_are_not_settings(name: str) -> None:
    """Tests pass a poll interval and a simulator URL to `build_runtime` / `build_slack_bot`, not the environment:
    set there, they are unknown names and stop start-up."""
    assert name not in {v.name for v in VARIABLES}
    with pytest.raises(ConfigError, match=f"^{name} is not a setting; "):
        load_settings({name: "1"})
