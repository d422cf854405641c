"""manifest.yml (HTTP mode) and manifest.socket.yml (Socket Mode) are valid Slack app manifests, match what the
bot handles, and differ only in how Slack reaches the bot.

Validated against Slack's published JSON schema (slackapi/manifest-schema, MIT; copy and licence in tests/data/).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "manifest.yml"
SOCKET_MANIFEST = ROOT / "manifest.socket.yml"
BOTH = pytest.mark.parametrize("path", [MANIFEST, SOCKET_MANIFEST], ids=["http", "socket"])
SCHEMA = ROOT / "tests" / "data" / "slack-app-manifest.v1.schema.json"

URL = "https://YOUR-HOST/slack/events"
USAGE_HINT = (
    "<machineId|hostname> [severity:high,medium] [status:new,inprogress,resolved] [since:7d|24h]"
    " | watch <device> [for:8h] | unwatch <device> | watches | help"
)
# channels:history and groups:history let `conversations.replies` read a watch's thread (public and private
# channels) to find a follow-up that reached Slack before a restart; im:history is for direct messages.
SCOPES = {
    "commands",
    "chat:write",
    "chat:write.public",
    "usergroups:read",
    "app_mentions:read",
    "im:history",
    "channels:history",
    "groups:history",
    "channels:join",  # a watch joins its public channel: Slack lists messages only to members
    "users:read",
    "users:read.email",
}


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def schema_errors(manifest: dict[str, Any]) -> list[str]:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(manifest)]


def urls(node: object) -> list[str]:
    """Every value of a `url` / `*_url` key and every http(s) string, anywhere in the manifest."""
    if isinstance(node, dict):
        found: list[str] = []
        for key, value in node.items():
            if isinstance(value, str) and (key == "url" or key.endswith("_url") or value.startswith("http")):
                found.append(value)
            else:
                found += urls(value)
        return found
    if isinstance(node, list):
        return [url for item in node for url in urls(item)]
    return []


def socket_mode_variant(manifest: dict[str, Any]) -> dict[str, Any]:
    """The HTTP manifest switched to Socket Mode: Socket Mode on, the three URL lines deleted."""
    variant = copy.deepcopy(manifest)
    variant["settings"]["socket_mode_enabled"] = True
    for command in variant["features"]["slash_commands"]:
        del command["url"]
    del variant["settings"]["event_subscriptions"]["request_url"]
    del variant["settings"]["interactivity"]["request_url"]
    return variant


def test_schema_copy_is_draft_7_and_licensed() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft7Validator
    assert "MIT License" in (SCHEMA.parent / "slack-app-manifest.LICENSE").read_text(encoding="utf-8")


@BOTH
def test_manifest_validates_against_slack_schema(path: Path) -> None:
    assert schema_errors(load_manifest(path)) == []


@BOTH
def test_manifest_declares_what_the_bot_handles(path: Path) -> None:
    manifest = load_manifest(path)
    assert manifest["_metadata"] == {"major_version": 1, "minor_version": 1}

    info = manifest["display_information"]
    assert info["name"] == "device-alerts"
    # The schema spells this constraint `regex`, which JSON Schema ignores: check it here.
    assert re.fullmatch(r"#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?", info["background_color"])

    bot_user = manifest["features"]["bot_user"]
    assert bot_user["display_name"] == "device-alerts"
    assert len(bot_user["display_name"]) <= 35
    assert bot_user["always_online"] is True

    app_home = manifest["features"]["app_home"]
    assert app_home["messages_tab_enabled"] is True
    assert app_home["messages_tab_read_only_enabled"] is False

    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/device-alerts"
    assert command["usage_hint"] == USAGE_HINT
    assert command["should_escape"] is False
    assert command["description"]

    assert set(manifest["oauth_config"]["scopes"]["bot"]) == SCOPES
    assert len(manifest["oauth_config"]["scopes"]["bot"]) == len(SCOPES)

    settings = manifest["settings"]
    assert set(settings["event_subscriptions"]["bot_events"]) == {"app_mention", "message.im"}
    assert len(settings["event_subscriptions"]["bot_events"]) == 2
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is (path == SOCKET_MANIFEST)
    assert settings["org_deploy_enabled"] is False
    assert settings["token_rotation_enabled"] is False


def test_every_url_is_the_single_events_endpoint() -> None:
    found = urls(load_manifest())
    assert len(found) == 3, found
    assert set(found) == {URL}
    lines = MANIFEST.read_text(encoding="utf-8").splitlines()
    url_lines = [line for line in lines if URL in line and not line.lstrip().startswith("#")]
    assert len(url_lines) == 3
    assert all(re.fullmatch(r"\s*(url|request_url): " + re.escape(URL), line) for line in url_lines), url_lines


def test_socket_manifest_has_no_url_and_socket_mode_on() -> None:
    socket = load_manifest(SOCKET_MANIFEST)
    assert urls(socket) == []
    assert socket["settings"]["socket_mode_enabled"] is True
    assert "YOUR-HOST" not in SOCKET_MANIFEST.read_text(encoding="utf-8")


def test_the_two_manifests_differ_only_in_how_slack_reaches_the_bot() -> None:
    """Same scopes, command, events and settings: the socket one is the HTTP one with Socket Mode on, URLs gone."""
    assert load_manifest(SOCKET_MANIFEST) == socket_mode_variant(load_manifest())


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("features", "slash_commands", 0, "command"), "device-alerts"),  # no leading slash
        (("surprise",), True),  # unknown top-level key
        (("settings", "interactivity", "is_enabled"), "yes"),  # wrong type
        (("display_information", "name"), "x" * 36),  # name over 35 characters
        (("settings", "event_subscriptions", "request_url"), "YOUR-HOST/slack/events"),  # no scheme
    ],
)
def test_broken_manifest_fails_validation(path: tuple[str | int, ...], value: object) -> None:
    manifest = load_manifest()
    target: Any = manifest
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert schema_errors(manifest), f"setting {path} to {value!r} should not validate"


def test_broken_manifest_missing_required_key_fails_validation() -> None:
    manifest = load_manifest()
    del manifest["display_information"]
    assert any("display_information" in error for error in schema_errors(manifest))
