"""Configuration fails closed: a `BOT_`/`DEFENDER_`/`SLACK_` name that is not a setting stops start-up, and the
Slack entry points serve the simulator only when `DEFENDER_BACKEND=simulator` says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, check_server_backend, load_settings, read_environment
from bot.config.names import PREFIXES, check_names
from bot.config.variables import VARIABLES


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("BOT_ALLOWED_CHANNEL", "BOT_ALLOWED_CHANNELS"),
        ("DEFENDER_TENNANT_ID", "DEFENDER_TENANT_ID"),
        ("SLACK_SIGNING_SECRETS", "SLACK_SIGNING_SECRET"),
    ],
)
def test_a_misspelled_name_per_prefix_stops_start_up_with_the_closest_setting(name: str, meant: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({name: "x"})
    assert str(raised.value) == f"{name} is not a setting; did you mean {meant}?"


def test_a_name_like_no_setting_says_where_the_settings_are_listed() -> None:
    with pytest.raises(ConfigError, match=r"^BOT_XYZZY is not a setting; the settings are listed in the README"):
        check_names(["BOT_XYZZY"])


def test_several_unknown_names_are_one_line_naming_the_first() -> None:
    with pytest.raises(ConfigError) as raised:
        check_names(["SLACK_TOKEN", "BOT_ALLOWED_CHANNEL"])
    assert str(raised.value) == (
        "BOT_ALLOWED_CHANNEL is not a setting (1 more unknown); did you mean BOT_ALLOWED_CHANNELS?"
    )
    assert "\n" not in str(raised.value)


def test_every_setting_and_other_prefixes_pass() -> None:
    check_names([v.name for v in VARIABLES] + ["PATH", "HOME", "BOTANIST", "SLACKER", "LOG_LEVELS"])


def test_a_misspelling_in_the_dotenv_file_stops_start_up_too(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("DEFENDER_BACKEND=simulator\nBOT_ALLOWED_CHANNEL=C0SOC\n")
    with pytest.raises(ConfigError, match="did you mean BOT_ALLOWED_CHANNELS"):
        load_settings(read_environment({}, dotenv_path=dotenv))


def test_the_prefixes_cover_every_prefixed_setting() -> None:
    """Each setting with a prefix of its own (not PORT, LOG_…, SSL_…) has one of the checked prefixes."""
    prefixed = {v.name.split("_")[0] + "_" for v in VARIABLES if v.name.startswith(("BOT_", "DEFENDER_", "SLACK_"))}
    assert prefixed == set(PREFIXES)


def test_servers_refuse_the_simulator_nobody_asked_for() -> None:
    with pytest.raises(ConfigError) as raised:
        check_server_backend(load_settings({}).defender)
    assert str(raised.value).startswith("DEFENDER_BACKEND: no Defender tenant is configured; set DEFENDER_TENANT_ID")
    assert "DEFENDER_BACKEND=simulator" in str(raised.value)


def test_servers_serve_the_simulator_when_asked() -> None:
    check_server_backend(load_settings({"DEFENDER_BACKEND": "simulator"}).defender)
