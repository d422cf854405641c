"""Alert details from a card: signed clicks, the strict `views.open` of the stand-in, both Defender APIs.

The stand-in refuses what Slack refuses: a trigger_id used twice or after 3 s, a view over the modal limits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.defender.simulator import HOSTILE_HOSTNAME
from bot.demo.clock import FakeClock
from bot.demo.standin import SlackStandIn
from bot.slack import alert_menu, details
from bot.slack.modals import view_violations
from tests.doubles.slack import Harness, alert_controls, all_text, assert_inert, close_soon, harness

FIN_014 = "ws-fin-014"


@pytest.fixture
def rig(defender_api: str) -> Iterator[Harness]:
    yield from harness(api=defender_api)


def card(rig: Harness, device: str = FIN_014) -> Any:
    rig.command(device, "r1")
    [posted] = rig.standin.wait_for_posts(1)
    return posted


def details_value(rig: Harness, posted: Any, index: int = 0) -> tuple[str, str]:
    """The sealed value of the card's `index`-th Details button, and the alert id it names."""
    control = alert_controls(posted)[index]
    assert control["action_id"] == alert_menu.DETAILS
    verb, machine_id, alert_id = rig.bot.seal.open(control["value"]).split(" ")
    assert verb == "details" and len(machine_id) == 40
    return control["value"], alert_id


def notes(rig: Harness, name: str = "b1") -> list[str]:
    rig.wait_idle()
    return [all_text(p.payload) for p in rig.standin.posts_to(name)]


def test_details_open_from_the_cached_list_with_no_defender_call(rig: Harness) -> None:
    posted = card(rig)
    # An alert with comments (the simulator's triaged ones have one): where it sits on the card depends on the time.
    for index in range(len(alert_controls(posted))):
        value, alert_id = details_value(rig, posted, index)
        record = next(a for a in rig.tenant.alerts if a["id"] == alert_id)
        if record["comments"]:
            break
    assert record["comments"], "the card shows no alert with comments"
    served = len(rig.tenant.request_log)
    rig.press(alert_menu.DETAILS, value)
    rig.wait_idle()
    assert len(rig.tenant.request_log) == served  # answered from the cache: the trigger is worth 3 s
    [view] = rig.standin.modals.views
    assert view["trigger_id"] == rig.requests.last_trigger
    assert view_violations(view) == []
    text = json.dumps(view)
    assert record["title"][:40] in text
    assert f"/alerts/{alert_id}" in text
    assert f"Comments ({len(record['comments'])})" in text and "*Classification*" in text


def test_details_for_a_device_not_cached_costs_one_lookup(defender_api: str) -> None:
    clock = FakeClock()
    for rig in harness(api=defender_api, clock=clock):
        posted = card(rig)
        value, _ = details_value(rig, posted)
        asked = len(rig.alerts_requests())
        clock.advance(rig.bot.runtime.settings.cache.max_stale + 1)  # the card's list aged out of the cache
        rig.press(alert_menu.DETAILS, value)
        rig.wait_idle()
        assert len(rig.standin.modals.views) == 1
        assert len(rig.alerts_requests()) == asked + 1  # one lookup, then the view


def test_an_expired_trigger_is_refused_and_the_person_told_to_click_again(rig: Harness) -> None:
    posted = card(rig)
    value, _ = details_value(rig, posted)
    now = [1000.0]
    rig.standin.modals.clock = lambda: now[0]
    request = rig.requests.block_action(alert_menu.DETAILS, value, response_url=rig.standin.response_url("b1"))
    now[0] += 3.5  # Slack's 3 s are over before the bot calls views.open
    rig.dispatch(request)
    rig.wait_idle()
    assert rig.standin.modals.views == []
    assert [m for m, _ in rig.standin.calls if m == "views.open"] == ["views.open"]
    rig.standin.wait_for_posts(2)
    assert any("Click Details again" in text for text in notes(rig))


def test_a_trigger_opens_one_view_only(rig: Harness) -> None:
    posted = card(rig)
    value, _ = details_value(rig, posted)
    request = rig.requests.block_action(alert_menu.DETAILS, value, response_url=rig.standin.response_url("b1"))
    rig.dispatch(request)
    rig.wait_idle()
    rig.dispatch(request)  # the same click delivered again: its trigger_id is spent
    rig.wait_idle()
    assert len(rig.standin.modals.views) == 1
    rig.standin.wait_for_posts(2)
    assert any("invalid_trigger_id" in text for text in notes(rig))


def test_a_tampered_control_is_refused(rig: Harness) -> None:
    posted = card(rig)
    value, alert_id = details_value(rig, posted)
    forged = value.replace(alert_id, "da0000000000000000_1")
    rig.press(alert_menu.DETAILS, forged)
    rig.standin.wait_for_posts(2)
    rig.wait_idle()
    assert rig.standin.modals.views == []
    assert details.INVALID_CONTROL in all_text(rig.standin.posts[-1].payload)


def test_details_follow_the_device_group_policy(defender_api: str) -> None:
    for rig in harness(api=defender_api, env={"BOT_DEVICE_GROUP_POLICY": "C0INCIDENT=*;C0OTHER=Servers"}):
        posted = card(rig)
        value, _ = details_value(rig, posted)
        # The same card's button pressed in a channel that may not see Finance devices.
        rig.dispatch(rig.requests.block_action(
            alert_menu.DETAILS, value, response_url=rig.standin.response_url("b2"), channel="C0OTHER"
        ))  # fmt: skip
        rig.wait_idle()
        assert rig.standin.modals.views == []
        [refusal] = [p for p in rig.standin.wait_for_posts(2) if p.target == "b2"]
        assert "No device in Defender matches" in all_text(refusal.payload)


def test_hostile_alert_content_stays_inert_in_the_view(rig: Harness) -> None:
    posted = card(rig, HOSTILE_HOSTNAME)
    for index in range(len(alert_controls(posted))):
        value, _ = details_value(rig, posted, index)
        rig.press(alert_menu.DETAILS, value)
        rig.wait_idle()
    assert rig.standin.modals.views
    for view in rig.standin.modals.views:
        assert view_violations(view) == []
        assert_inert({"text": "x", "blocks": view["blocks"]})


def test_the_stand_in_refuses_views_and_emails_as_slack_does() -> None:
    standin = SlackStandIn()
    try:
        client = WebClient(token=standin.bot_token, base_url=standin.api_url, retry_handlers=[])
        standin.issue_trigger("t1")
        too_long = {"type": "modal", "title": {"type": "plain_text", "text": "x" * 25},
                    "blocks": [{"type": "divider"}]}  # fmt: skip
        with pytest.raises(SlackApiError) as refused:
            client.views_open(trigger_id="t1", view=too_long)
        assert refused.value.response["error"] == "invalid_arguments"
        many = {**too_long, "title": {"type": "plain_text", "text": "ok"}, "blocks": [{"type": "divider"}] * 101}
        with pytest.raises(SlackApiError):
            client.views_open(trigger_id="t1", view=many)
        with pytest.raises(SlackApiError) as unknown:
            client.views_open(trigger_id="made-up", view={**many, "blocks": [{"type": "divider"}]})
        assert unknown.value.response["error"] == "invalid_trigger_id"
        standin.modals.users["U1"] = {"name": "u", "email": "u@example.com"}
        assert client.users_info(user="U1")["user"]["profile"]["email"] == "u@example.com"
        standin.modals.scopes.discard("users:read.email")
        assert "email" not in client.users_info(user="U1")["user"]["profile"]
        standin.modals.scopes.discard("users:read")
        with pytest.raises(SlackApiError) as scope:
            client.users_info(user="U1")
        assert scope.value.response["error"] == "missing_scope"
    finally:
        close_soon(standin)
