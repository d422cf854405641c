"""The Slack app driven through `App.dispatch`: commands, mentions, DMs, buttons and errors.

Slack is played by `SlackStandIn` (Web API and response_url endpoints on 127.0.0.1) and Defender by the
built-in simulator, so every test checks what a person would actually see and what Defender was asked.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from slack_bolt import BoltContext

from bot.config import Visibility
from bot.defender.simulator import HOSTILE_HOSTNAME, SimulatedTenant
from bot.demo.clock import FakeClock
from bot.slack import actions, listeners, replies
from bot.slack.blockkit import violations
from bot.slack.replies import BUSY
from tests.doubles.defender import graph_since, shown_alerts
from tests.doubles.slack import PINGS, Harness, ack_json, all_text, buttons, foreign_tokens, harness, header

FIN_014 = "ws-fin-014.contoso.local"
FIN_015 = "ws-fin-015.contoso.local"
USAGE_MARK = "Usage: `/device-alerts &lt;machineId|hostname&gt;"
INVALID_BUTTON = "That button's data is not valid. Run the command again."


@pytest.fixture
def rig(defender_api: str) -> Iterator[Harness]:
    yield from harness(api=defender_api)


def machine(rig: Harness, hostname: str) -> dict[str, Any]:
    """The simulator's (newest) record for a hostname."""
    found = [m for m in rig.tenant.machines if m["computerDnsName"] == hostname]
    assert found, hostname
    return max(found, key=lambda m: str(m["lastSeen"]))


def severity_counts(rig: Harness, machine_id: str) -> Counter[str]:
    """The device's alerts by severity, as its card shows them through the bot's API (Graph adds the alerts
    whose evidence names it, such as the lateral-movement alerts that came from it)."""
    labels = {"UnSpecified": "Unspecified"}
    return Counter(labels.get(a["severity"], a["severity"]) for a in shown_alerts(rig.tenant, machine_id, rig.api))


def quiet(rig: Harness, seconds: float = 0.3) -> None:
    """Let the pool and any background notice finish, so 'nothing was posted' means nothing."""
    rig.wait_idle()
    time.sleep(seconds)


# -- slash command ---------------------------------------------------------------------------------------------


def test_command_acks_at_once_then_posts_the_card_in_channel(rig: Harness) -> None:
    started = time.monotonic()
    ack = ack_json(rig.command("ws-fin-014", "r1"))
    assert time.monotonic() - started < 1.0
    assert ack["text"] == "Looking up ws-fin-014…"
    assert "response_type" not in ack  # an ack with text is shown to the invoker only

    [posted] = rig.standin.wait_for_posts(1)
    assert (posted.via, posted.target) == ("response_url", "r1")
    assert posted.payload["response_type"] == "in_channel"
    assert posted.payload["replace_original"] is False
    record = machine(rig, FIN_014)
    counts = severity_counts(rig, record["id"])
    total = sum(counts.values())
    assert header(posted) == f"{FIN_014} · {total} alerts"
    assert posted.payload["text"].startswith(f"{FIN_014}: {total} alerts (")
    assert f"High {counts['High']}" in posted.payload["text"]
    assert f"Low {counts['Low']}" in posted.payload["text"]
    assert rig.bot.seal.open(buttons(posted)[actions.REFRESH]["value"]) == record["id"]
    assert violations(posted.message) == []


def test_command_with_filters_shows_them_on_the_card(rig: Harness) -> None:
    ack = ack_json(rig.command("ws-fin-014 severity:high,low", "r1"))
    assert ack["text"] == "Looking up ws-fin-014 severity:high,low…"
    [posted] = rig.standin.wait_for_posts(1)
    counts = severity_counts(rig, machine(rig, FIN_014)["id"])
    shown = counts["High"] + counts["Low"]
    assert header(posted) == f"{FIN_014} · {shown} alert{'' if shown == 1 else 's'}"
    assert "*Filters*  severity: High, Low" in all_text(posted.payload)
    assert rig.bot.seal.open(buttons(posted)[actions.REFRESH]["value"]).endswith(" severity:high,low")


def test_ephemeral_visibility_answers_below_the_looking_up_note(defender_api: str) -> None:
    for rig in harness(env={"BOT_RESPONSE_VISIBILITY": "ephemeral"}, api=defender_api):
        assert rig.bot.settings.visibility is Visibility.EPHEMERAL
        assert ack_json(rig.command("ws-fin-014", "r1"))["text"] == "Looking up ws-fin-014…"
        [posted] = rig.standin.wait_for_posts(1)
        # Slack cannot replace the ack's note: the card is a second message, for the asker only.
        assert (posted.payload["replace_original"], posted.payload["response_type"]) == (False, "ephemeral")
        assert not posted.replaced
        assert header(posted).startswith(FIN_014)


@pytest.mark.parametrize("text", ["", "   ", "help", "HELP", "?", "usage ws-fin-014"])
def test_help_is_answered_in_the_ack_without_defender(rig: Harness, text: str) -> None:
    ack = ack_json(rig.command(text))
    assert ack["text"] == "How to use /device-alerts"
    body = all_text(ack)
    assert "*Look up a device's Defender alerts*" in body
    assert "built-in Defender simulator" in body
    quiet(rig, 0.1)
    assert rig.tenant.calls == 0
    assert rig.standin.posts == []


@pytest.mark.parametrize("text", ["watches", "WATCHES", "  watches  ", "alerts watches"])
def test_watches_is_answered_in_the_ack_without_defender(rig: Harness, text: str) -> None:
    ack = ack_json(rig.command(text))
    assert "response_type" not in ack  # seen only by the person who asked
    assert ack["text"] == "No watches in this channel"
    assert all_text(ack).endswith("No device is watched in this channel.")
    quiet(rig, 0.1)
    assert rig.tenant.calls == 0
    assert rig.standin.posts == []


@pytest.mark.parametrize(
    ("text", "note"),
    [
        ("watch ws-fin-014", "Setting up a watch on ws-fin-014…"),
        ("WATCH ws-fin-014 for:2h", "Setting up a watch on ws-fin-014…"),
        ("watch for:30m ws-fin-014 severity:high", "Setting up a watch on ws-fin-014 severity:high…"),
    ],
)
def test_watch_is_a_command_that_posts_a_root_card(rig: Harness, text: str, note: str) -> None:
    ack = ack_json(rig.command(text, "w1"))
    assert ack["text"] == note
    root, thread_note, confirmation = rig.standin.wait_for_posts(3)
    assert (root.via, root.target) == ("chat.postMessage", "C0INCIDENT")
    assert header(root).startswith(f"{FIN_014} · ")
    assert actions.UNWATCH in buttons(root)
    assert thread_note.payload["thread_ts"] == root.payload["ts"]
    assert (confirmation.via, confirmation.target) == ("response_url", "w1")
    assert confirmation.payload["text"].startswith(f"Watching {FIN_014} until ")
    [watch] = rig.bot.store.live_watches("C0INCIDENT")
    assert watch.machine_id == machine(rig, FIN_014)["id"]


def test_unwatch_without_a_watch_says_so(rig: Harness) -> None:
    assert ack_json(rig.command("unwatch ws-fin-014", "u1"))["text"] == "Stopping the watch…"
    [note] = rig.standin.wait_for_posts(1)
    assert (note.target, note.payload["text"]) == ("u1", "No watch on ws-fin-014 in this channel.")
    assert note.payload["replace_original"] is False  # below the ephemeral "Stopping…" note, which stays
    assert rig.tenant.calls == 0


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("watch", "name a device: a machine id or a hostname"),
        ("unwatch", "name a device: a machine id or a hostname"),
        ("watch ws-fin-014 for:8d", "a watch lasts at most 7d"),
        ("watch ws-fin-014 for:soon", "'for:soon' is not a duration like 30m, 8h or 2d"),
        ("unwatch ../etc", "'../etc': not a machine id"),
    ],
)
def test_bad_watch_commands_are_explained_without_defender(rig: Harness, text: str, problem: str) -> None:
    ack = ack_json(rig.command(text))
    assert "response_type" not in ack
    assert problem in ack["blocks"][0]["text"]["text"]
    quiet(rig, 0.1)
    assert rig.tenant.calls == 0
    assert rig.standin.posts == []
    assert rig.bot.store.live_watches() == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ws-fin-014 color:red", "unknown filter 'color:' (use severity:, status: or since:)"),
        ("ws-fin-014 severity:extreme", "unknown severity 'extreme'"),
        ("ws-fin-014 status:done", "unknown status 'done'"),
        ("ws-fin-014 since:forever", "'since:forever' is not a duration like 30m, 24h, 7d or 2w"),
        ("ws-fin-014 since:181d", "'since:' can reach back at most 180d"),
        ("ws-fin-014 ws-fin-015", "one device per lookup: got 'ws-fin-014' and 'ws-fin-015'"),
        ("../etc", "'../etc': not a machine id (40 hex characters) or a hostname"),
        ("ws-fin-014%2f..", "'ws-fin-014%2f..': not a machine id"),
        ("severity:high", "name a device: a machine id or a hostname"),
        ("x" * 501, "the request is longer than 500 characters"),
    ],
)
def test_bad_input_is_explained_with_usage_and_never_reaches_defender(rig: Harness, text: str, problem: str) -> None:
    ack = ack_json(rig.command(text))
    assert "response_type" not in ack  # ephemeral
    section = ack["blocks"][0]["text"]["text"]
    assert section.startswith(":warning: ")
    assert problem in section
    assert USAGE_MARK in all_text(ack)
    quiet(rig, 0.1)
    assert rig.tenant.calls == 0
    assert rig.tenant.request_log == []
    assert rig.standin.posts == []


def test_hostile_command_text_is_escaped_in_the_explanation(rig: Harness) -> None:
    ack = ack_json(rig.command("<!channel> <@U024BE7LH>"))
    text = json.dumps(ack)
    assert not any(ping in text for ping in PINGS)
    assert "&lt;!channel&gt;" in all_text(ack)
    assert rig.tenant.calls == 0


# -- mentions and direct messages ------------------------------------------------------------------------------


def test_mention_is_answered_in_a_thread_under_it(rig: Harness) -> None:
    mention = rig.requests.mention("ws-fin-014", ts="1700000000.000100")
    response = rig.event(mention)
    assert (response.status, response.body) == (200, "")
    [posted] = rig.standin.wait_for_posts(1)
    assert (posted.via, posted.target) == ("chat.postMessage", "C0INCIDENT")
    assert posted.payload["thread_ts"] == "1700000000.000100"
    assert header(posted).startswith(f"{FIN_014} · ")


def test_mention_inside_a_thread_answers_in_that_thread(rig: Harness) -> None:
    rig.event(rig.requests.mention("alerts ws-fin-015", ts="1700000000.000200", thread_ts="1700000000.000001"))
    [posted] = rig.standin.wait_for_posts(1)
    assert posted.payload["thread_ts"] == "1700000000.000001"
    assert header(posted).startswith(f"{FIN_015} · ")


def test_mention_with_an_auto_linked_hostname(rig: Harness) -> None:
    linked = f"<http://{FIN_014}|{FIN_014}> severity:high"
    rig.event(rig.requests.mention(linked, ts="1700000000.000300"))
    [posted] = rig.standin.wait_for_posts(1)
    counts = severity_counts(rig, machine(rig, FIN_014)["id"])
    assert header(posted) == f"{FIN_014} · {counts['High']} alert{'' if counts['High'] == 1 else 's'}"
    assert posted.payload["thread_ts"] == "1700000000.000300"


def test_mention_with_bad_input_gets_the_explanation_in_thread_seen_only_by_the_asker(rig: Harness) -> None:
    rig.event(rig.requests.mention("../etc", ts="1700000000.000400"))
    [posted] = rig.standin.wait_for_posts(1)
    assert (posted.via, posted.payload["user"]) == ("chat.postEphemeral", "U0ALICE")
    assert posted.payload["thread_ts"] == "1700000000.000400"
    assert "not a machine id" in posted.payload["text"]
    assert rig.tenant.calls == 0


def test_direct_message_is_answered_in_the_dm(rig: Harness) -> None:
    dm = {"type": "message", "channel": "D0ALICE", "channel_type": "im", "user": "U0ALICE",
          "text": "ws-fin-015", "ts": "1700000000.000500"}  # fmt: skip
    rig.event(dm)
    [posted] = rig.standin.wait_for_posts(1)
    assert (posted.via, posted.target) == ("chat.postMessage", "D0ALICE")
    assert "thread_ts" not in posted.payload  # a DM answer is a plain reply, not a thread
    assert header(posted).startswith(f"{FIN_015} · ")


@pytest.mark.parametrize(
    "extra",
    [
        {"bot_id": "B0OTHERBOT", "user": "U0OTHERBOT"},  # another bot (or this one) writing in the DM
        {"bot_id": "B0DEVALERTS", "user": "U0DEVALERTS"},
        {"subtype": "message_changed"},
        {"subtype": "bot_message", "bot_id": "B0OTHERBOT"},
        {"channel_type": "channel", "channel": "C0INCIDENT"},  # plain channel chatter without a mention
    ],
)
def test_messages_that_are_not_a_persons_dm_are_ignored(rig: Harness, extra: dict[str, str]) -> None:
    dm = {"type": "message", "channel": "D0ALICE", "channel_type": "im", "user": "U0ALICE",
          "text": "ws-fin-014", "ts": "1700000000.000600", **extra}  # fmt: skip
    assert rig.event(dm).status == 200
    quiet(rig)
    assert rig.standin.posts == []
    assert rig.tenant.calls == 0


def test_mention_in_a_dm_is_answered_once(rig: Harness) -> None:
    ts = "1700000000.000700"
    text = "<@U0DEVALERTS> ws-fin-014"
    rig.event({"type": "app_mention", "user": "U0ALICE", "text": text, "channel": "D0ALICE", "ts": ts})
    rig.event({"type": "message", "channel": "D0ALICE", "channel_type": "im", "user": "U0ALICE", "text": text,
               "ts": ts})  # fmt: skip
    rig.standin.wait_for_posts(1)
    quiet(rig)
    [posted] = rig.standin.posts
    assert posted.target == "D0ALICE"
    assert header(posted).startswith(FIN_014)


def test_a_retried_event_is_answered_once_and_distinct_events_twice(rig: Harness) -> None:
    mention = rig.requests.mention("ws-fin-014", ts="1700000000.000800")
    assert rig.event(mention, event_id="Ev0DUPLICATE").status == 200
    retry = rig.event(mention, event_id="Ev0DUPLICATE", retry_num=1)
    assert (retry.status, retry.body) == (200, "")
    rig.event(rig.requests.mention("ws-fin-015", ts="1700000000.000900"), event_id="Ev0OTHER")
    rig.standin.wait_for_posts(2)
    quiet(rig)
    posts = rig.standin.posts
    assert len(posts) == 2
    assert sorted(p.payload["thread_ts"] for p in posts) == ["1700000000.000800", "1700000000.000900"]


def test_same_message_with_different_event_ids_gets_two_replies(rig: Harness) -> None:
    mention = rig.requests.mention("ws-fin-014", ts="1700000000.001000")
    rig.event(mention, event_id="Ev0FIRST")
    rig.event(mention, event_id="Ev0SECOND")
    rig.standin.wait_for_posts(2)
    quiet(rig)
    assert [p.payload["thread_ts"] for p in rig.standin.posts] == ["1700000000.001000"] * 2


# -- buttons ---------------------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def clocked(clock: FakeClock, defender_api: str) -> Iterator[Harness]:
    yield from harness(clock=clock, api=defender_api)


def test_refresh_replaces_the_card_and_asks_defender_only_after_the_interval(
    clocked: Harness, clock: FakeClock
) -> None:
    rig = clocked
    rig.command("ws-fin-014", "cmd")
    [card] = rig.standin.wait_for_posts(1)
    value = buttons(card)[actions.REFRESH]["value"]
    device = machine(rig, FIN_014)["id"]
    assert rig.bot.seal.open(value) == device
    assert len(rig.alerts_requests()) == 1
    calls_before = rig.tenant.calls

    clock.advance(2)  # younger than the 5 s refresh interval: the cached list is reused
    response = rig.press(actions.REFRESH, value, "cmd")
    assert (response.status, response.body) == (200, "")
    posts = rig.standin.wait_for_posts(2)
    replaced = posts[1]
    assert (replaced.via, replaced.target) == ("response_url", "cmd")
    assert replaced.payload["replace_original"] is True
    assert "response_type" not in replaced.payload
    assert header(replaced) == header(card)
    assert "cached 2 s" in all_text(replaced.payload)
    assert rig.tenant.calls == calls_before

    clock.advance(4)  # now 6 s old: a refresh goes to Defender again
    rig.press(actions.REFRESH, value, "cmd")
    refreshed = rig.standin.wait_for_posts(3)[2]
    assert refreshed.payload["replace_original"] is True
    assert "fresh from Defender" in all_text(refreshed.payload)
    if rig.graph:  # the mirror's backfill, then one delta call from its watermark: never a per-device request
        backfill, delta = rig.alerts_requests()
        assert graph_since(backfill) < graph_since(delta)
    else:
        assert rig.alerts_requests() == [f"/api/machines/{device}/alerts"] * 2


def test_refresh_keeps_the_filters_of_the_card(clocked: Harness, clock: FakeClock) -> None:
    rig = clocked
    rig.command("ws-fin-014 severity:high", "cmd")
    [card] = rig.standin.wait_for_posts(1)
    clock.advance(10)
    rig.press(actions.REFRESH, buttons(card)[actions.REFRESH]["value"], "cmd")
    refreshed = rig.standin.wait_for_posts(2)[1]
    assert header(refreshed) == header(card)
    assert "*Filters*  severity: High" in all_text(refreshed.payload)
    assert len(rig.alerts_requests()) == 2


@pytest.mark.parametrize(
    "value",
    [
        FIN_014,  # a hostname: this bot writes machine ids only
        "junk ../etc",
        "../../api/alerts",
        "c7663fe2de4691490a39131d227c25d9dc2bc9d6 color:red",
        "",
        "a" * 2001,
        "c7663fe2de4691490a39131d227c25d9dc2bc9d6 " + "x" * 2000,
    ],
)
def test_tampered_refresh_value_is_refused_without_defender(rig: Harness, value: str) -> None:
    response = rig.press(actions.REFRESH, value, "b1")
    assert (response.status, response.body) == (200, "")
    [note] = rig.standin.wait_for_posts(1)
    assert (note.via, note.target) == ("response_url", "b1")
    assert note.payload["text"] == INVALID_BUTTON
    assert note.payload["response_type"] == "ephemeral"
    quiet(rig, 0.1)
    assert rig.tenant.calls == 0


def test_watch_button_starts_a_watch_in_the_cards_channel(rig: Harness) -> None:
    rig.command("ws-fin-014 severity:high", "cmd")
    [card] = rig.standin.wait_for_posts(1)
    value = buttons(card)[actions.WATCH]["value"]
    response = rig.press(actions.WATCH, value, "b2")
    assert (response.status, response.body) == (200, "")
    root, thread_note, note = rig.standin.wait_for_posts(4)[1:]
    assert (root.via, root.target) == ("chat.postMessage", "C0INCIDENT")
    assert "*Filters*  severity: High" in all_text(root.payload)
    machine_id = rig.bot.seal.open(value).split()[0]
    assert rig.bot.seal.open(buttons(root)[actions.UNWATCH]["value"]) == machine_id
    assert actions.WATCH not in buttons(root)
    assert thread_note.payload["thread_ts"] == root.payload["ts"]
    assert (note.via, note.target, note.payload["response_type"]) == ("response_url", "b2", "ephemeral")
    assert note.payload["text"].startswith(f"Watching {FIN_014} until ")
    [watch] = rig.bot.store.live_watches("C0INCIDENT")
    assert (watch.machine_id, watch.filter_text, watch.created_by) == (machine_id, "severity:high", "U0ALICE")


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "unsealed"])
@pytest.mark.parametrize("action_id", [actions.WATCH, actions.UNWATCH])
@pytest.mark.parametrize("value", [FIN_014, "../etc", "", "c7663fe2de4691490a39131d227c25d9dc2bc9d6 color:red"])
def test_tampered_watch_buttons_are_refused_without_defender(
    rig: Harness, action_id: str, value: str, sealed: bool
) -> None:
    """Unsealed values fail the seal; sealed ones (a leaked key, a bug) still meet the strict parser."""
    assert rig.press(action_id, rig.bot.seal.seal(value) if sealed else value, "b4").status == 200
    [note] = rig.standin.wait_for_posts(1)
    assert note.payload["text"].startswith("That button's data is not valid.")
    assert note.payload["response_type"] == "ephemeral"
    quiet(rig, 0.1)
    assert rig.tenant.calls == 0
    assert rig.bot.store.live_watches() == []


def test_open_in_defender_is_acked_and_nothing_is_posted(rig: Harness) -> None:
    response = rig.press(actions.OPEN_DEVICE, "", "b3")
    assert (response.status, response.body) == (200, "")
    quiet(rig)
    assert rig.standin.posts == []
    assert rig.tenant.calls == 0


# -- problem cards ---------------------------------------------------------------------------------------------


def test_unknown_prefix_suggests_devices(rig: Harness) -> None:
    rig.command("ws-fin", "r1")
    [posted] = rig.standin.wait_for_posts(1)
    text = all_text(posted.payload)
    assert posted.payload["text"] == "No device in Defender matches 'ws-fin'."
    assert f"Did you mean: `{FIN_014}`, `{FIN_015}`?" in text
    assert "You asked: `ws-fin`" in text
    assert "Usage:" not in text  # the input was fine; the device does not exist
    # Below the asker's "Looking up…" note, and like it, seen only by them.
    assert (posted.payload["replace_original"], posted.payload["response_type"]) == (False, "ephemeral")


def test_unknown_device_without_suggestions(rig: Harness) -> None:
    rig.command("no-such-host", "r1")
    [posted] = rig.standin.wait_for_posts(1)
    assert posted.payload["text"] == "No device in Defender matches 'no-such-host'."
    assert "Did you mean" not in all_text(posted.payload)


def test_defender_throttling_says_when_to_retry(rig: Harness) -> None:
    rig.tenant.fail_next(429, retry_after=30, times=1)
    rig.command(FIN_014, "r1")
    [posted] = rig.standin.wait_for_posts(1)
    text = all_text(posted.payload)
    assert posted.payload["text"] == "Defender is throttling the bot's requests."
    assert "Try again in 30 s." in text
    assert "Injected fault" not in text
    assert rig.tenant.calls == 1  # the bot honours Retry-After instead of hammering Defender
    rig.command(FIN_015, "r2")  # still inside the 30 s: refused without a call
    second = rig.standin.wait_for_posts(2)[1]
    assert second.payload["text"] == "Defender is throttling the bot's requests."
    assert rig.tenant.calls == 1


def test_throttling_with_cached_data_serves_it_as_stale(clocked: Harness, clock: FakeClock) -> None:
    rig = clocked
    rig.command(FIN_014, "r1")
    [fresh] = rig.standin.wait_for_posts(1)
    clock.advance(120)  # past the 60 s cache TTL
    rig.tenant.fail_next(429, retry_after=30, times=1)
    rig.command(FIN_014, "r2")
    stale = rig.standin.wait_for_posts(2)[1]
    assert header(stale) == header(fresh)
    assert ":warning: stale: Defender throttled, data from 2 min ago" in all_text(stale.payload)


def test_defender_errors_show_the_unavailable_card(rig: Harness) -> None:
    rig.tenant.fail_next(500, times=3)  # every attempt the client makes
    rig.command(FIN_014, "r1")
    [posted] = rig.standin.wait_for_posts(1, timeout=15)
    text = all_text(posted.payload)
    assert posted.payload["text"] == "Defender could not be reached."
    assert "Try again in a minute." in text
    for detail in ("Injected fault", "gave up", "attempts", "answered 500", "api.simulator.invalid"):
        assert detail not in text
    assert rig.tenant.calls == 3


def test_sign_in_failure_card_keeps_operator_detail_out(rig: Harness) -> None:
    rig.tenant.fail_next(401, times=2)  # the client refreshes its token once, then gives up
    rig.command(FIN_014, "r1")
    [posted] = rig.standin.wait_for_posts(1)
    text = all_text(posted.payload)
    assert posted.payload["text"] == "The bot could not sign in to Defender."
    assert "An admin should check the bot's configuration and logs." in text
    for detail in ("rejected the app's token", "DEFENDER_CLOUD", "DEFENDER_SCOPE", "admin consent"):
        assert detail not in text


def test_hostile_device_card_is_escaped_and_valid(rig: Harness) -> None:
    rig.command(HOSTILE_HOSTNAME, "r1")
    [posted] = rig.standin.wait_for_posts(1)
    raw = json.dumps(posted.payload, ensure_ascii=False)
    for ping in PINGS:
        assert ping not in raw
    assert "<https://evil" not in raw
    assert foreign_tokens(posted.payload) == []
    assert "&lt;!channel&gt; Urgent" in all_text(posted.payload)  # shown, but inert
    assert violations(posted.message) == []
    assert header(posted).startswith(HOSTILE_HOSTNAME)


def test_hostile_device_in_a_mention_thread_is_escaped(rig: Harness) -> None:
    rig.event(rig.requests.mention(HOSTILE_HOSTNAME))
    [posted] = rig.standin.wait_for_posts(1)  # the stand-in refuses invalid blocks, so arriving is a check too
    raw = json.dumps(posted.payload, ensure_ascii=False)
    assert not any(ping in raw for ping in PINGS)
    assert foreign_tokens(posted.payload) == []


# -- the busy path ---------------------------------------------------------------------------------------------


@pytest.fixture
def tiny(defender_api: str) -> Iterator[Harness]:
    env = {"BOT_WORKERS": "1", "BOT_MAX_PENDING": "0"}
    yield from harness(env=env, tenant=SimulatedTenant(latency=1.0), api=defender_api)


def test_a_full_pool_acks_busy_at_once(tiny: Harness) -> None:
    rig = tiny
    assert rig.bot.pool.capacity == 1
    assert ack_json(rig.command(FIN_014, "first"))["text"] == f"Looking up {FIN_014}…"
    started = time.monotonic()
    busy = ack_json(rig.command(FIN_015, "second"))
    assert time.monotonic() - started < 0.5
    assert busy["text"] == BUSY
    [card] = rig.standin.wait_for_posts(1, timeout=10)
    assert card.target == "first"
    assert header(card).startswith(FIN_014)
    rig.wait_idle()
    # capacity is back once the first lookup finished (the third lookup is served from the cache)
    assert ack_json(rig.command(FIN_014, "third"))["text"] == f"Looking up {FIN_014}…"
    assert rig.standin.wait_for_posts(2)[1].target == "third"


def test_a_full_pool_tells_a_mention_it_is_busy(tiny: Harness) -> None:
    rig = tiny
    rig.command(FIN_014, "first")
    rig.event(rig.requests.mention("ws-fin-015", ts="1700000000.002000"))
    [notice] = rig.standin.wait_for_posts(1, timeout=0.9)  # before the slow lookup could finish
    assert (notice.via, notice.payload["text"], notice.payload["thread_ts"]) == (
        "chat.postMessage",
        BUSY,
        "1700000000.002000",
    )


# -- Slack Web API failures ------------------------------------------------------------------------------------


@pytest.mark.defender_api("mde", reason="a Slack fault: which Defender API answers plays no part")
def test_post_message_rate_limit_is_waited_out(rig: Harness) -> None:
    rig.standin.fail_next("chat.postMessage", status=429, error="ratelimited", retry_after=1)
    started = time.monotonic()
    rig.event(rig.requests.mention("ws-fin-014"))
    [posted] = rig.standin.wait_for_posts(1, timeout=10)
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured
    assert header(posted).startswith(FIN_014)
    quiet(rig, 0.1)
    assert len(rig.standin.posts) == 1


@pytest.mark.defender_api("mde", reason="a Slack fault: which Defender API answers plays no part")
def test_post_message_server_error_is_retried(rig: Harness) -> None:
    rig.standin.fail_next("chat.postMessage", status=500)
    rig.event(rig.requests.mention("ws-fin-014"))
    [posted] = rig.standin.wait_for_posts(1, timeout=10)
    assert header(posted).startswith(FIN_014)
    quiet(rig, 0.1)
    assert len(rig.standin.posts) == 1


@pytest.mark.defender_api("mde", reason="a Slack fault: which Defender API answers plays no part")
def test_response_url_server_error_is_retried(rig: Harness) -> None:
    rig.standin.fail_next("response_url", status=503)
    rig.command(FIN_014, "r1")
    [posted] = rig.standin.wait_for_posts(1, timeout=10)
    assert posted.target == "r1"


@pytest.mark.defender_api("mde", reason="a Slack fault: which Defender API answers plays no part")
def test_post_message_refused_is_logged(rig: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.slack.poster")
    rig.standin.fail_next("chat.postMessage", status=200, error="channel_not_found")
    rig.event(rig.requests.mention("ws-fin-014", channel="C0GONE"))
    rig.wait_idle()
    assert rig.standin.posts == []
    messages = [r.getMessage() for r in caplog.records if r.name == "bot.slack.poster"]
    assert messages == ["chat.postMessage to C0GONE failed: channel_not_found"]


@pytest.mark.defender_api("mde", reason="a Slack fault: which Defender API answers plays no part")
def test_expired_response_url_is_logged_not_raised(rig: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.slack.poster")
    rig.standin.expire("gone")
    assert ack_json(rig.command(FIN_014, "gone"))["text"] == f"Looking up {FIN_014}…"
    rig.wait_idle()
    assert rig.standin.posts == []
    messages = [r.getMessage() for r in caplog.records if r.name == "bot.slack.poster"]
    assert messages == ["response_url answered 404 expired_url"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # the bot keeps working afterwards
    rig.command(FIN_014, "fresh")
    assert rig.standin.wait_for_posts(1)[0].target == "fresh"


# -- unexpected errors -----------------------------------------------------------------------------------------

REFERENCE = re.compile(r"Something went wrong on the bot's side \(reference ([0-9a-f]{12})\)\.")


def _boom(*_: object, **__: object) -> Any:
    raise RuntimeError("kaboom: internal detail")


def _error_references(caplog: pytest.LogCaptureFixture) -> list[str]:
    found = []
    for record in caplog.records:
        if record.name == "bot.slack.listeners" and record.levelno == logging.ERROR:
            match = re.match(r"unhandled error ([0-9a-f]{12}) in a ", record.getMessage())
            assert match, record.getMessage()
            assert record.exc_info and isinstance(record.exc_info[1], RuntimeError)
            found.append(match[1])
    return found


def test_listener_error_is_logged_with_a_reference_the_user_sees(
    rig: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.ERROR, logger="bot.slack.listeners")
    monkeypatch.setattr(listeners, "parse_command", _boom)
    response = rig.command("help", "err")
    assert response.status == 500  # Bolt's answer when a listener raised before acknowledging
    [note] = rig.standin.wait_for_posts(1)
    assert (note.target, note.payload["response_type"]) == ("err", "ephemeral")
    match = REFERENCE.fullmatch(note.payload["text"])
    assert match, note.payload["text"]
    assert "kaboom" not in json.dumps(note.payload)
    [reference] = _error_references(caplog)
    assert reference == match[1]
    message = next(r.getMessage() for r in caplog.records if r.name == "bot.slack.listeners")
    assert (
        message
        == f"unhandled error {reference} in a command request (team T0STANDIN, channel C0INCIDENT, user U0ALICE)"
    )


def test_a_quick_answer_that_fails_is_still_acknowledged_with_a_reference(
    rig: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers made inside the acknowledgement (help, watches) fail into a note, not into Slack's timeout."""
    caplog.set_level(logging.ERROR, logger="bot.slack.listeners")
    monkeypatch.setattr(replies.Replier, "immediate", _boom)
    ack = ack_json(rig.command("help", "err"))
    match = REFERENCE.fullmatch(ack["text"])
    assert match, ack["text"]
    assert "kaboom" not in json.dumps(ack)
    assert _error_references(caplog) == [match[1]]


def test_button_listener_error_gets_a_reference_note(
    rig: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.ERROR, logger="bot.slack.listeners")
    monkeypatch.setattr(actions, "parse_lookup_value", _boom)
    rig.press(actions.REFRESH, rig.bot.seal.seal("c7663fe2de4691490a39131d227c25d9dc2bc9d6"), "btn")
    [note] = rig.standin.wait_for_posts(1)
    match = REFERENCE.fullmatch(note.payload["text"])
    assert match, note.payload["text"]
    assert _error_references(caplog) == [match[1]]
    [message] = [r.getMessage() for r in caplog.records if r.name == "bot.slack.listeners"]
    assert message.endswith("in a button request (team T0STANDIN, channel C0INCIDENT, user U0ALICE)")


def test_event_listener_error_is_logged_without_a_reply(
    rig: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.ERROR, logger="bot.slack.listeners")
    monkeypatch.setattr(listeners, "parse_command", _boom)
    mention = rig.requests.mention("ws-fin-014")
    response = rig.event(mention, event_id="Ev0FAILS")
    assert response.status == 500  # Bolt's answer when a listener raised; Slack then retries the delivery
    retry = rig.event(mention, event_id="Ev0FAILS", retry_num=1)
    assert (retry.status, retry.body) == (200, "")  # the retry is dropped by the deduper, not failed again
    quiet(rig)
    assert rig.standin.posts == []  # an event has no response_url to answer on
    assert len(_error_references(caplog)) == 1


def test_error_inside_a_lookup_job_still_tells_the_user(rig: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replies.Replier, "lookup", _boom)
    assert ack_json(rig.command(FIN_014, "job"))["text"] == f"Looking up {FIN_014}…"
    [note] = rig.standin.wait_for_posts(1, timeout=1.5)
    assert REFERENCE.fullmatch(note.payload["text"])


def test_an_error_before_verification_reaches_no_log_line_and_no_url(
    rig: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """Bolt can fail on a request before the bot's middleware has verified it (issue: a malformed body). Its
    body is the sender's: its response_url must not be called, and nothing of it may be logged."""
    url = rig.standin.response_url("not-verified")
    calls = len(rig.standin.calls)
    body = {"type": "block_actions\nforged audit line", "response_url": url, "user": {"id": "U0EVIL\n{}"}}
    with caplog.at_level(logging.DEBUG):
        rig.bot.listeners.on_error(ValueError("boom"), body, BoltContext())
    time.sleep(0.2)
    assert rig.standin.posts == [] and len(rig.standin.calls) == calls
    assert "forged" not in caplog.text and "U0EVIL" not in caplog.text
    assert "failed before verification: ValueError" in caplog.text
