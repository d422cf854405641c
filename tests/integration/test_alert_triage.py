"""Triage from Slack (opt-in), end to end with signed requests, on both Defender APIs.

Slack is the stand-in (strict `views.open`, `users.info` with or without `users:read.email`); Defender is the
simulator, whose write APIs refuse what the real ones refuse. Every test checks what was written, how often,
and what the person who clicked was told.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.access.triage import NOT_ENABLED
from bot.alerts.triage import Verb
from bot.defender.simulator import SimulatedTenant
from bot.demo.clock import FakeClock
from bot.slack import alert_menu
from bot.slack.alert_views import CHOICE_ACTION, CHOICE_BLOCK, NOTE_BLOCK
from bot.slack.modals import view_violations
from tests.doubles.redis import require_redis, shared_state, url_with_prefix
from tests.doubles.slack import Harness, alert_controls, all_text, harness

ALICE = "U0ALICE"
EMAIL = "alice@contoso.com"
TRIAGE_ON = {"BOT_TRIAGE": "on", "BOT_TRIAGE_USERS": ALICE}


def triage_rig(defender_api: str, env: dict[str, str] | None = None, **options: Any) -> Iterator[Harness]:
    for rig in harness(api=defender_api, env={**TRIAGE_ON, **(env or {})}, **options):
        rig.standin.modals.users[ALICE] = {"name": "alice", "email": EMAIL, "real_name": "Alice"}
        yield rig


@pytest.fixture
def rig(defender_api: str) -> Iterator[Harness]:
    yield from triage_rig(defender_api)


def card(rig: Harness) -> Any:
    rig.command("ws-fin-014", "r1")
    [posted] = rig.standin.wait_for_posts(1)
    return posted


def menu_value(rig: Harness, posted: Any, verb: str, index: int = 0) -> tuple[str, str]:
    """The sealed value of `verb` in the `index`-th alert's menu, and that alert's id."""
    menu = alert_controls(posted)[index]
    assert menu["type"] == "overflow" and menu["action_id"] == alert_menu.ALERT_MENU
    for option in menu["options"]:
        opened = rig.bot.seal.open(option["value"]).split(" ")
        if opened[0] == verb:
            return option["value"], opened[2]
    raise AssertionError(verb)


def stored(rig: Harness, alert_id: str) -> dict[str, Any]:
    return next(a for a in rig.tenant.alerts if a["id"] == alert_id)


def told(rig: Harness, name: str = "b1") -> list[str]:
    rig.wait_idle()
    return [all_text(p.payload) for p in rig.standin.posts_to(name)]


def choose(rig: Harness, verb: Verb, index: int = 0) -> str:
    posted = card(rig)
    value, alert_id = menu_value(rig, posted, verb.value, index)
    rig.choose(alert_menu.ALERT_MENU, value)
    rig.wait_idle()
    return alert_id


def form_values(choice: str | None = None, note: str | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if choice is not None:
        values[CHOICE_BLOCK] = {CHOICE_ACTION: {"type": "static_select", "selected_option": {"value": choice}}}
    if note is not None:
        values[NOTE_BLOCK] = {CHOICE_ACTION: {"type": "plain_text_input", "value": note}}
    return values


def writes(rig: Harness) -> list[tuple[str, str, dict[str, Any]]]:
    return list(rig.tenant.writes.writes)


# -- off, or not allowed -------------------------------------------------------------------------------------


def test_triage_is_off_by_default_and_a_hand_made_menu_choice_is_refused(defender_api: str) -> None:
    for rig in harness(api=defender_api):
        posted = card(rig)
        assert {c["type"] for c in alert_controls(posted)} == {"button"}  # Details only
        _, machine_id, alert_id = rig.bot.seal.open(alert_controls(posted)[0]["value"]).split(" ")
        forged = rig.bot.seal.seal(f"assign {machine_id} {alert_id}")  # sealed: only the switch stops it
        rig.choose(alert_menu.ALERT_MENU, forged)
        assert any(NOT_ENABLED in text for text in told(rig))
        assert writes(rig) == []


def test_a_person_not_on_the_triage_lists_is_refused(rig: Harness) -> None:
    posted = card(rig)
    value, _ = menu_value(rig, posted, "assign")
    rig.dispatch(rig.requests.overflow_action(
        alert_menu.ALERT_MENU, value, response_url=rig.standin.response_url("b1"), user_id="U0BOB"
    ))  # fmt: skip
    assert any("not on this bot's list of people who may change alerts" in text for text in told(rig))
    assert writes(rig) == []


def test_a_member_of_a_triage_user_group_may_write_on_the_first_click(defender_api: str) -> None:
    """The triage groups are read at start-up with the access rules' ones: the first click is not "could not check",
    and a group Slack cannot read does not block a member of another."""
    env = {"BOT_TRIAGE": "on", "BOT_TRIAGE_USERS": "", "BOT_TRIAGE_USERGROUPS": "S0GONE,S0TRIAGE"}
    for rig in triage_rig(defender_api, env, usergroups={"S0TRIAGE": {ALICE}}):
        alert_id = choose(rig, Verb.ASSIGN)
        assert stored(rig, alert_id)["assignedTo"] == EMAIL


# -- assign to me --------------------------------------------------------------------------------------------


def test_assign_to_me_writes_once_names_who_and_redraws_the_card(rig: Harness) -> None:
    alert_id = choose(rig, Verb.ASSIGN)
    [(_, written_id, body)] = [w for w in writes(rig) if w[0] != "graph-alert-comments"]
    assert written_id == alert_id
    alert = stored(rig, alert_id)
    assert alert["assignedTo"] == EMAIL
    assert ALICE in alert["comments"][-1]["comment"] and "C0INCIDENT" in alert["comments"][-1]["comment"]
    if not rig.graph:
        assert body["assignedTo"] == EMAIL and ALICE in body["comment"]  # one PATCH carries both
    answers = [p for p in rig.standin.posts if p.target == "b1"]
    redrawn = [p for p in answers if p.payload.get("replace_original") is True]
    assert redrawn and f"assigned to {EMAIL}" in all_text(redrawn[0].payload)
    assert any("Done" in all_text(p.payload) for p in answers)

    # A second click (or a double click) finds it already done: nothing more is written.
    rig.choose(alert_menu.ALERT_MENU, menu_value(rig, rig.standin.posts[0], "assign")[0])
    assert any("Nothing to change" in text for text in told(rig))
    assert len(writes(rig)) == (2 if rig.graph else 1)  # Graph: the PATCH and the comment POST


def test_assign_needs_the_email_scope(rig: Harness) -> None:
    rig.standin.modals.scopes.discard("users:read.email")
    choose(rig, Verb.ASSIGN)
    assert any("users:read.email" in text for text in told(rig))
    assert writes(rig) == []


def test_a_missing_write_permission_is_named(rig: Harness) -> None:
    rig.tenant.writes.roles.clear()
    choose(rig, Verb.ASSIGN)
    permission = "SecurityAlert.ReadWrite.All" if rig.graph else "Alert.ReadWrite.All"
    assert any(permission in text for text in told(rig))
    assert writes(rig) == []


# -- forms ---------------------------------------------------------------------------------------------------


def opened_form(rig: Harness, verb: Verb) -> tuple[dict[str, Any], str]:
    alert_id = choose(rig, verb)
    [view] = rig.standin.modals.views
    assert view_violations(view) == []
    return view, alert_id


def test_status_form_resolves_once_even_when_submitted_twice(rig: Harness) -> None:
    view, alert_id = opened_form(rig, Verb.STATUS)
    values = form_values("Resolved", "contained by EDR")
    assert rig.submit(view, values).status == 200
    assert rig.submit(view, values).status == 200  # a double submit
    rig.wait_idle()
    assert stored(rig, alert_id)["status"] == "Resolved"
    assert len(writes(rig)) == (2 if rig.graph else 1)  # Graph: the PATCH and the comment POST
    assert "contained by EDR" in stored(rig, alert_id)["comments"][-1]["comment"]


def test_classify_form_writes_a_pair_the_api_accepts(rig: Harness) -> None:
    view, alert_id = opened_form(rig, Verb.CLASSIFY)
    options = [o["value"] for g in view["blocks"][1]["element"]["option_groups"] for o in g["options"]]
    assert "FalsePositive|Clean" in options and "TruePositive|CompromisedUser" in options
    rig.submit(view, form_values("FalsePositive|Clean"))
    rig.wait_idle()
    alert = stored(rig, alert_id)
    assert (alert["classification"], alert["determination"]) == ("FalsePositive", "Clean")


def test_a_form_without_a_choice_stays_open_with_an_error(rig: Harness) -> None:
    view, _ = opened_form(rig, Verb.CLASSIFY)
    response = rig.submit(view, form_values())
    assert json.loads(response.body)["response_action"] == "errors"
    assert writes(rig) == []


def test_a_comment_is_written_once(rig: Harness) -> None:
    view, alert_id = opened_form(rig, Verb.COMMENT)
    rig.submit(view, form_values(note="looks like the pentest"))
    rig.submit(view, form_values(note="looks like the pentest"))
    rig.wait_idle()
    comments = [c["comment"] for c in stored(rig, alert_id)["comments"] if "looks like the pentest" in c["comment"]]
    assert len(comments) == 1 and ALICE in comments[0]


def test_a_form_submitted_later_is_checked_again(defender_api: str) -> None:
    clock = FakeClock()
    for rig in triage_rig(defender_api, clock=clock):
        view, alert_id = opened_form(rig, Verb.STATUS)
        rig.tenant.set_alert_status(alert_id, "Resolved")  # someone resolved it in the portal meanwhile
        clock.advance(30)
        rig.submit(view, form_values("Resolved"))
        assert any("Nothing to change" in text for text in told(rig))
        assert writes(rig) == []


def test_tampered_form_metadata_writes_nothing(rig: Harness) -> None:
    view, _ = opened_form(rig, Verb.STATUS)
    forged = {**view, "private_metadata": view["private_metadata"].replace("status", "assign")}
    rig.submit(forged, form_values("Resolved"))
    rig.wait_idle()
    assert writes(rig) == []


# -- watches and the audit trail -----------------------------------------------------------------------------


def test_a_watch_reports_a_change_made_from_slack_once_saying_who(rig: Harness) -> None:
    rig.command("watch ws-fin-014", "w1")
    rig.standin.wait_for_posts(3)
    rig.wait_idle()
    [root] = [p for p in rig.standin.posts if p.via == "chat.postMessage" and not p.payload.get("thread_ts")]
    new = [
        (value, alert_id)
        for index in range(len(alert_controls(root)))
        for value, alert_id in [menu_value(rig, root, "status", index)]
        if stored(rig, alert_id)["status"] == "New"
    ]
    value, alert_id = new[0]
    rig.choose(alert_menu.ALERT_MENU, value, message_ts=str(root.payload["ts"]))
    rig.wait_idle()
    rig.submit(rig.standin.modals.views[-1], form_values("InProgress"))
    rig.wait_idle()
    assert stored(rig, alert_id)["status"] == "InProgress"

    def thread() -> list[str]:
        return [all_text(p.payload) for p in rig.standin.posts if p.payload.get("thread_ts") == root.payload["ts"]]

    rig.bot.poller.run_once()
    said = [text for text in thread() if "via Slack" in text]
    assert len(said) == 1 and f"<@{ALICE}>" in said[0] and "In progress" in said[0]
    before = thread()
    assert rig.bot.poller.run_once().changes == 0  # the poller sees the same change: nothing more is said
    assert thread() == before


def test_every_write_and_refusal_is_in_the_audit_trail(defender_api: str, tmp_path: Path) -> None:
    trail = tmp_path / "audit.jsonl"
    for rig in triage_rig(defender_api, env={"BOT_AUDIT_LOG": str(trail)}):
        alert_id = choose(rig, Verb.ASSIGN)
        rig.dispatch(rig.requests.overflow_action(
            alert_menu.ALERT_MENU, menu_value(rig, rig.standin.posts[0], "assign")[0],
            response_url=rig.standin.response_url("b2"), user_id="U0BOB",
        ))  # fmt: skip
        rig.wait_idle()
    records = [json.loads(line) for line in trail.read_text().splitlines()]
    [written] = [r for r in records if r["audit"] == "triage_assign" and r["user"] == ALICE]
    assert written["result"] == "ok" and written["alert"] == alert_id
    assert written["change"].startswith("assignedTo: ") and written["change"].endswith(f" -> {EMAIL}")
    assert written["defender_call"] is True
    [refused] = [r for r in records if r["audit"] == "triage_assign" and r["user"] == "U0BOB"]
    assert (refused["result"], refused["reason"]) == ("refused", "triage")


def test_a_double_submit_reaching_two_processes_writes_once(defender_api: str) -> None:
    """Two bots sharing Redis (as two processes do): the same form submitted to each at once, one write."""
    require_redis()
    with shared_state() as state:
        tenant = SimulatedTenant()
        url = url_with_prefix(state.prefix)
        running = [triage_rig(defender_api, tenant=tenant, state_url=url) for _ in range(2)]
        rigs = [next(bot) for bot in running]
        try:
            view, alert_id = opened_form(rigs[0], Verb.STATUS)
            rigs[1].standin.modals.users.update(rigs[0].standin.modals.users)
            values = form_values("Resolved")
            threads = [threading.Thread(target=rig.submit, args=(view, values)) for rig in rigs]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for rig in rigs:
                rig.wait_idle()
            assert stored(rigs[0], alert_id)["status"] == "Resolved"
            patches = [w for w in tenant.writes.writes if w[0] != "graph-alert-comments"]
            assert len(patches) == 1
        finally:
            for bot in running:
                bot.close()
