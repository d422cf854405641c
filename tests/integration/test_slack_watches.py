"""Device watches in Slack, driven through `App.dispatch` (and once through the real HTTP server).

A watch is started with `/device-alerts watch …`, a mention or a card's Watch button: the bot posts a root card
in the channel and a note in its thread. Changes in Defender (the simulator, mutated here) are found by
`bot.poller.run_once()` and answered with one threaded reply per check, while the root card is redrawn with
`chat.update`. The poller's background thread is not started unless a test says so, so each check happens
exactly when the test runs it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.defender.simulator import HOSTILE_HOSTNAME
from bot.demo.slack_requests import SlackRequests
from bot.demo.standin import Posted, SlackStandIn
from bot.slack import actions
from bot.slack.blockkit import Message, violations
from bot.slack.poster import FOLLOWUP_EVENT
from bot.slack.server import HttpServer, wsgi_app
from bot.slack.watching import SlackWatches
from bot.state.watches import WatchStatus
from tests.doubles.defender import machine_id, shown_alerts
from tests.doubles.slack import (
    MEMORY_STATE_URL,
    PINGS,
    SIGNING_SECRET,
    Harness,
    ack_json,
    all_text,
    buttons,
    close_server,
    close_soon,
    foreign_tokens,
    harness,
    header,
    make_bot,
)

FIN_014 = "ws-fin-014.contoso.local"
FIN_015 = "ws-fin-015.contoso.local"
CHANNEL = "C0INCIDENT"
DATE = re.compile(r"<!date\^(\d+)\^([^|>]+)\|([^>]+)>")
NOT_IN_CHANNEL = "the bot is not in the channel: invite it, then start the watch again"


@pytest.fixture
def rig(defender_api: str) -> Iterator[Harness]:
    yield from harness(api=defender_api)


def alert_of(rig: Harness, hostname: str, *, status: str = "New", title: str = "") -> dict[str, Any]:
    """An alert of the device in that status (and with `title` in its title)."""
    device = machine_id(rig.tenant, hostname)
    for alert in rig.tenant.alerts:
        if alert["machineId"] == device and alert["status"] == status and title in alert["title"]:
            return alert
    raise AssertionError(f"no {status} alert on {hostname}")


def start(rig: Harness, text: str = "watch ws-fin-014", url: str = "w1", **kwargs: Any) -> tuple[Posted, ...]:
    """Send a watch command; return what it posted: root card, thread note, ephemeral confirmation."""
    before = len(rig.standin.posts)
    ack = ack_json(rig.dispatch(rig.requests.command(text, response_url=rig.standin.response_url(url), **kwargs)))
    assert ack["text"].startswith("Setting up a watch on ")
    rig.standin.wait_for_posts(before + 3)
    rig.wait_idle()
    return tuple(rig.standin.posts[before:])


def ts(posted: Posted) -> str:
    """The ts the stand-in gave a message the bot posted."""
    return str(posted.payload["ts"])


def thread(rig: Harness, root: Posted) -> list[Posted]:
    """The bot's replies in the root card's thread, oldest first."""
    return [p for p in rig.standin.posts if p.via == "chat.postMessage" and p.payload.get("thread_ts") == ts(root)]


def updates(rig: Harness, root: Posted) -> list[Posted]:
    return [p for p in rig.standin.posts if p.via == "chat.update" and p.payload["ts"] == ts(root)]


def top_level(rig: Harness) -> list[Posted]:
    """Messages the bot posted in a channel outside any thread: root cards."""
    return [p for p in rig.standin.posts if p.via == "chat.postMessage" and not p.payload.get("thread_ts")]


def context_lines(posted: Posted) -> list[str]:
    return [e["text"] for b in posted.payload["blocks"] if b["type"] == "context" for e in b["elements"]]


def sections(posted: Posted) -> list[str]:
    return [b["text"]["text"] for b in posted.payload["blocks"] if b["type"] == "section"]


def dates(text: str) -> list[datetime]:
    return [datetime.fromtimestamp(int(m[1]), UTC) for m in DATE.finditer(text)]


def watches_ack(rig: Harness, channel: str = CHANNEL) -> dict[str, Any]:
    request = rig.requests.command("watches", response_url=rig.standin.response_url("list"), channel_id=channel)
    return ack_json(rig.dispatch(request))


def near(moment: datetime, expected: datetime, slack: timedelta = timedelta(seconds=30)) -> bool:
    return abs(moment - expected) <= slack


# -- starting a watch -------------------------------------------------------------------------------------------


def test_watch_posts_a_root_card_a_thread_note_and_an_ephemeral_confirmation(rig: Harness) -> None:
    asked = datetime.now(UTC)
    root, note, confirmation = start(rig, "watch ws-fin-014", "w1")
    device = machine_id(rig.tenant, FIN_014)

    assert (root.via, root.target) == ("chat.postMessage", CHANNEL)
    assert "thread_ts" not in root.payload  # the root is a message of its own in the channel
    assert header(root).startswith(f"{FIN_014} · ")
    badge = [line for line in context_lines(root) if line.startswith(":eyes: ")]
    assert len(badge) == 1, context_lines(root)
    # The alerts the watch starts from were read just now: that is its first check.
    assert re.fullmatch(r":eyes: Watched by <@U0ALICE> until <!date\^\d+\^[^>]+> · last checked <!date[^>]+>", badge[0])
    until, checked = dates(badge[0])
    assert near(checked, asked, timedelta(seconds=5))
    assert near(until, asked + timedelta(hours=8))  # the default length
    found = buttons(root)
    assert list(found) == [actions.REFRESH, actions.OPEN_DEVICE, actions.UNWATCH]
    assert rig.bot.seal.open(found[actions.UNWATCH]["value"]) == device
    assert found[actions.UNWATCH]["text"]["text"] == "Unwatch"

    assert (note.via, note.target, note.payload["thread_ts"]) == ("chat.postMessage", CHANNEL, ts(root))
    [line] = sections(note)
    assert line.startswith(f":eyes: <@U0ALICE> is watching *{FIN_014}* until <!date^{int(until.timestamp())}^")
    assert line.endswith("New alerts and status changes will appear in this thread.")

    assert (confirmation.via, confirmation.target) == ("response_url", "w1")
    # Below the ephemeral "Setting up…" note (Slack cannot replace an ack's message), for the asker only.
    assert (confirmation.payload["replace_original"], confirmation.payload["response_type"]) == (False, "ephemeral")
    expected = f"Watching {FIN_014} until {until:%Y-%m-%d %H:%M} UTC; changes appear in the card's thread."
    assert confirmation.payload["text"] == expected

    [watch] = rig.bot.store.live_watches(CHANNEL)
    assert (watch.machine_id, watch.device_name, watch.root_ts, watch.created_by) == (
        device,
        FIN_014,
        ts(root),
        "U0ALICE",
    )
    assert watch.status is WatchStatus.ACTIVE
    assert watch.last_checked_at is not None and int(watch.last_checked_at.timestamp()) == int(checked.timestamp())
    assert int(watch.expires_at.timestamp()) == int(until.timestamp())  # date tokens carry whole seconds
    for posted in (root, note, confirmation):
        assert violations(posted.message) == []


@pytest.mark.parametrize(("words", "length"), [("for:2h", timedelta(hours=2)), ("for:7d", timedelta(days=7))])
def test_for_sets_the_watch_length(rig: Harness, words: str, length: timedelta) -> None:
    asked = datetime.now(UTC)
    start(rig, f"watch ws-fin-014 {words}")
    [watch] = rig.bot.store.live_watches()
    assert near(watch.expires_at, asked + length)


def test_watching_again_extends_the_watch_without_a_second_root_card(rig: Harness) -> None:
    root, _, _ = start(rig, "watch ws-fin-014 for:1h", "w1")
    [first] = rig.bot.store.live_watches()
    asked = datetime.now(UTC)
    update, note, confirmation = start(rig, "watch c7663fe2de4691490a39131d227c25d9dc2bc9d6 for:2d", "w2")

    assert top_level(rig) == [root]
    assert (update.via, update.payload["ts"]) == ("chat.update", ts(root))
    assert note.payload["thread_ts"] == ts(root)
    assert confirmation.target == "w2"
    [watch] = rig.bot.store.live_watches()
    assert watch.id == first.id
    assert near(watch.expires_at, asked + timedelta(days=2))
    [badge] = [line for line in context_lines(update) if line.startswith(":eyes: ")]
    assert int(dates(badge)[0].timestamp()) == int(watch.expires_at.timestamp())
    assert confirmation.payload["text"].startswith(f"Watching {FIN_014} until {watch.expires_at:%Y-%m-%d %H:%M} UTC")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("watch ws-fin-014 for:0", "'for:0' is not a duration like 30m, 8h or 2d"),
        ("watch ws-fin-014 for:0h", "'for:' must be longer than zero"),
        ("watch ws-fin-014 for:8d", "a watch lasts at most 7d"),
        ("watch ws-fin-014 for:30d", "a watch lasts at most 7d"),
        ("watch ws-fin-014 for:junk", "'for:junk' is not a duration like 30m, 8h or 2d"),
        ("watch ws-fin-014 for:1h for:2h", "'for:' is given twice"),
    ],
)
def test_bad_for_is_explained_to_the_sender_only(rig: Harness, text: str, problem: str) -> None:
    ack = ack_json(rig.command(text))
    assert "response_type" not in ack
    assert ack["blocks"][0]["text"]["text"] == f":warning: {problem}"
    assert f"You asked: `{text}`" in all_text(ack)
    assert "Usage: `/device-alerts watch &lt;machineId|hostname&gt; [for:8h]" in all_text(ack)
    time.sleep(0.2)
    rig.wait_idle()
    assert rig.standin.posts == []
    assert rig.tenant.calls == 0
    assert rig.bot.store.live_watches() == []


@pytest.mark.parametrize(
    ("text", "summary", "suggestion"),
    [
        ("watch no-such-host", "No device in Defender matches 'no-such-host'.", None),
        ("watch ws-fin for:1h", "No device in Defender matches 'ws-fin'.", f"`{FIN_014}`"),
    ],
)
def test_watch_on_an_unknown_device_answers_with_the_not_found_card(
    rig: Harness, text: str, summary: str, suggestion: str | None
) -> None:
    rig.command(text, "w1")
    [card] = rig.standin.wait_for_posts(1)
    rig.wait_idle()
    assert (card.via, card.target, card.payload["text"]) == ("response_url", "w1", summary)
    assert card.payload["replace_original"] is False
    if suggestion:
        assert f"Did you mean: {suggestion}" in all_text(card.payload)
    assert rig.standin.posts == [card]
    assert "chat.postMessage" not in [method for method, _ in rig.standin.calls]
    assert rig.bot.store.live_watches() == []


def test_a_channel_the_bot_is_not_in_gets_a_clear_message_and_no_live_watch(rig: Harness) -> None:
    rig.standin.fail_next("chat.postMessage", error="not_in_channel")
    rig.command("watch ws-fin-014", "w1")
    [note] = rig.standin.wait_for_posts(1)
    rig.wait_idle()
    assert (note.target, note.payload["text"]) == ("w1", f"Could not post the watch card here: {NOT_IN_CHANNEL}.")
    assert rig.bot.store.live_watches() == []
    assert watches_ack(rig)["text"] == "No watches in this channel"
    assert rig.bot.poller.run_once().posted == 0  # nothing left behind for the poller either

    # Once the bot is invited, the same command works.
    root, _, confirmation = start(rig, "watch ws-fin-014", "w2")
    assert header(root).startswith(FIN_014)
    assert confirmation.payload["text"].startswith(f"Watching {FIN_014} until ")
    assert len(rig.bot.store.live_watches()) == 1


def test_a_watch_joins_its_public_channel_so_its_thread_can_be_read_back(rig: Harness) -> None:
    assert CHANNEL not in rig.standin.channels.joined  # the bot posts there (chat:write.public) without being a member
    start(rig)
    assert ("conversations.join", {"channel": CHANNEL}) in rig.standin.calls
    assert CHANNEL in rig.standin.channels.joined


def test_a_private_channel_the_bot_is_not_in_is_refused_with_how_to_invite_it(rig: Harness) -> None:
    rig.standin.channels.private.add("C0PRIVATE")
    request = rig.requests.command(
        "watch ws-fin-014", response_url=rig.standin.response_url("w1"), channel_id="C0PRIVATE"
    )
    rig.dispatch(request)
    [note] = rig.standin.wait_for_posts(1)
    rig.wait_idle()
    assert note.target == "w1"
    assert note.payload["text"] == (
        "Cannot watch here: this is a private channel the bot is not in. Invite it (`/invite @device-alerts`), "
        "then start the watch again."
    )
    assert rig.bot.store.live_watches() == []
    assert "chat.postMessage" not in [method for method, _ in rig.standin.calls]

    rig.standin.channels.joined.add("C0PRIVATE")  # invited: joining is refused (private), reading the thread works
    root, _, _ = start(rig, url="w2", channel_id="C0PRIVATE")
    [watch] = rig.bot.store.live_watches()
    assert (watch.channel, watch.root_ts) == ("C0PRIVATE", ts(root))


# -- follow-ups -------------------------------------------------------------------------------------------------


def test_a_check_posts_one_grouped_reply_in_the_thread_and_updates_the_root(rig: Harness) -> None:
    root, note, _ = start(rig, "watch ws-fin-014 for:2h")
    device = machine_id(rig.tenant, FIN_014)
    total = len(shown_alerts(rig.tenant, device, rig.api))
    new = rig.tenant.add_alert(device, title="Ransomware behavior detected", severity="High", category="Ransomware")
    moved = alert_of(rig, FIN_014, status="New", title="Suspicious PowerShell")
    rig.tenant.set_alert_status(moved["id"], "InProgress")

    report = rig.bot.poller.run_once()
    assert (report.ran, report.changes, report.posted, report.pending) == (True, 2, 1, 0)
    assert report.defender_calls == 1  # one delta call for every watch
    replies = thread(rig, root)
    assert replies[0] == note
    [reply] = replies[1:]
    assert reply.payload["text"] == f"{FIN_014}: 2 changes"
    lines = sections(reply)
    assert len(lines) == 2
    assert any(
        line.startswith(":red_circle: *New alert* · High · <https://security.microsoft.com/alerts/")
        and line.endswith(
            f"{new['id']}?tid=0f3c2b1a-5d4e-4f6a-9b8c-7d6e5f4a3b2c|Ransomware behavior detected> · Ransomware"
        )
        for line in lines
    ), lines
    assert any(
        line.startswith(":arrows_counterclockwise: <https://security.microsoft.com/alerts/")
        and line.endswith("|Suspicious PowerShell command line>: New → *In progress*")
        for line in lines
    ), lines
    assert reply.payload["metadata"]["event_type"] == FOLLOWUP_EVENT
    assert re.fullmatch(r"\d+:\d+", reply.payload["metadata"]["event_payload"]["reference"])
    assert violations(reply.message) == []

    [update] = updates(rig, root)
    assert header(update) == f"{FIN_014} · {total + 1} alerts"
    [badge] = [line for line in context_lines(update) if line.startswith(":eyes: ")]
    assert re.search(r"last checked <!date\^\d+\^\{time\}\|", badge), badge
    assert actions.UNWATCH in buttons(update)
    assert violations(update.message) == []

    # A check that finds nothing posts nothing.
    before = len(rig.standin.posts)
    assert rig.bot.poller.run_once().changes == 0
    assert rig.standin.posts[before:] == []


def test_more_than_eight_changes_end_with_and_n_more(rig: Harness) -> None:
    root, _, _ = start(rig)
    device = machine_id(rig.tenant, FIN_014)
    for n in range(11):
        rig.tenant.add_alert(device, title=f"Burst alert {n}", severity="Medium")
    assert rig.bot.poller.run_once().posted == 1
    [reply] = thread(rig, root)[1:]
    assert reply.payload["text"] == f"{FIN_014}: 11 changes"
    assert len(sections(reply)) == 8
    assert context_lines(reply) == ["…and 3 more changes"]
    assert violations(reply.message) == []


def test_exactly_eight_changes_need_no_more_line(rig: Harness) -> None:
    root, _, _ = start(rig)
    device = machine_id(rig.tenant, FIN_014)
    for n in range(8):
        rig.tenant.add_alert(device, title=f"Burst alert {n}")
    rig.bot.poller.run_once()
    [reply] = thread(rig, root)[1:]
    assert len(sections(reply)) == 8
    assert context_lines(reply) == []


def test_hostile_alert_text_in_follow_ups_is_escaped(rig: Harness) -> None:
    root, _, _ = start(rig, f"watch {HOSTILE_HOSTNAME}")
    device = machine_id(rig.tenant, HOSTILE_HOSTNAME)
    rig.tenant.add_alert(device, title="<!channel> x", severity="High", category="<!here>")
    urgent = alert_of(rig, HOSTILE_HOSTNAME, title="<!channel> Urgent")
    rig.tenant.set_alert_status(
        urgent["id"], "Resolved", classification="TruePositive", determination="<!everyone> <@U024BE7LH>"
    )
    pinging = alert_of(rig, HOSTILE_HOSTNAME, title="<@U024BE7LH>")
    rig.tenant.set_alert_status(pinging["id"], "New", assignedTo="<!subteam^S1|@oncall> <https://evil.example|me>")
    assert rig.bot.poller.run_once().posted == 1

    [reply] = thread(rig, root)[1:]
    raw = json.dumps(reply.payload, ensure_ascii=False)
    for ping in PINGS:
        assert ping not in raw
    assert "<https://evil" not in raw
    assert foreign_tokens(reply.payload) == []
    text = all_text(reply.payload)
    assert "|&lt;!channel&gt; x> · &lt;!here&gt;" in text
    assert "&lt;!channel&gt; Urgent: &lt;https://evil.example/login¦Reset your password&gt;>: New → *Resolved*" in text
    # Graph's determination is an enum: text it does not know arrives as unknownFutureValue.
    assert (
        "(TruePositive / Unknown)" if rig.graph else "(TruePositive / &lt;!everyone&gt; &lt;@U024BE7LH&gt;)"
    ) in text
    assert "assigned to &lt;!subteam^S1|@oncall&gt; &lt;https://evil.example|me&gt; (was unassigned)" in text
    assert violations(reply.message) == []
    # The redrawn root card is escaped too; its only mention is the person watching.
    [update] = updates(rig, root)
    assert foreign_tokens(update.payload) == ["<@U0ALICE>"]
    assert violations(update.message) == []


def test_a_throttle_slows_checks_and_the_root_card_says_so(rig: Harness) -> None:
    root, _, _ = start(rig)
    rig.tenant.fail_next(429, retry_after=30)  # the delta call is throttled
    report = rig.bot.poller.run_once()
    assert report.note == "Checks slowed to every 2 min: Defender is throttling the bot."
    assert rig.bot.poller.interval == 120
    [update] = updates(rig, root)
    [badge] = [line for line in context_lines(update) if line.startswith(":eyes: ")]
    assert badge.endswith(" · :hourglass: Checks slowed to every 2 min: Defender is throttling the bot.")
    assert thread(rig, root)[1:] == []


# -- listing and stopping ---------------------------------------------------------------------------------------


def test_watches_lists_device_who_since_until_last_check_and_why_one_is_paused(rig: Harness) -> None:
    assert watches_ack(rig)["text"] == "No watches in this channel"
    started = datetime.now(UTC)
    root_014, _, _ = start(rig, "watch ws-fin-014 for:2h")
    root_015, _, _ = start(rig, "watch ws-fin-015 for:1d", user_id="U0BOB")
    start(rig, "watch ws-fin-014", channel_id="C0OTHER")  # another channel's watch is not listed here

    before = watches_ack(rig)
    assert before["text"] == "2 watches in this channel"
    lines = sections_of(before)
    assert lines[0] == "*Watches in this channel*"
    assert re.fullmatch(
        rf"• \*{re.escape(FIN_014)}\* by <@U0ALICE> since <!date[^>]+>, until <!date[^>]+>, "
        r"last check <!date\^\d+\^\{time\}\|[^>]+>",
        lines[1],
    ), lines[1]
    assert lines[2].startswith(f"• *{FIN_015}* by <@U0BOB> since <!date^")
    since, until, checked = dates(lines[2])
    assert near(since, started) and near(until, started + timedelta(days=1)) and near(checked, started)
    assert near(dates(lines[1])[1], started + timedelta(hours=2))
    first_checks = [w.last_checked_at for w in rig.bot.store.live_watches(CHANNEL)]

    # Slack refuses the follow-up for ws-fin-015: that watch pauses, and the list says why.
    rig.tenant.add_alert(machine_id(rig.tenant, FIN_015), title="Credential theft", severity="High")
    rig.standin.fail_next("chat.postMessage", error="not_in_channel")
    report = rig.bot.poller.run_once()
    assert (report.posted, report.pending) == (0, 1)
    after = watches_ack(rig)
    lines = sections_of(after)
    assert len(lines) == 3
    later_checks = [w.last_checked_at for w in rig.bot.store.live_watches(CHANNEL)]
    assert all(a and b and b > a for a, b in zip(first_checks, later_checks, strict=True))
    assert int(dates(lines[1])[2].timestamp()) == int(later_checks[0].timestamp())  # type: ignore[union-attr]
    assert lines[2].endswith(f" · :double_vertical_bar: paused: {NOT_IN_CHANNEL}")
    assert [w.status for w in rig.bot.store.live_watches(CHANNEL)] == [WatchStatus.ACTIVE, WatchStatus.PAUSED]
    assert thread(rig, root_015)[1:] == []
    assert violations(Message(after["text"], after["blocks"])) == []

    # Starting the watch again in a channel the bot still cannot post in keeps it paused, and says so.
    rig.standin.fail_next("chat.postMessage", error="not_in_channel")
    rig.dispatch(rig.requests.command("watch ws-fin-015", response_url=rig.standin.response_url("again")))
    note = wait_for_target(rig, "again")
    assert note.payload["text"] == f"The watch on {FIN_015} is paused: {NOT_IN_CHANNEL}."
    assert rig.bot.store.live_watches(CHANNEL)[1].status is WatchStatus.PAUSED
    assert rig.bot.poller.run_once(check=False).posted == 0

    # Invited, and watched again: the watch resumes and the change it held back reaches the thread.
    start(rig, "watch ws-fin-015", "resume")
    assert rig.bot.store.live_watches(CHANNEL)[1].status is WatchStatus.ACTIVE
    assert rig.bot.poller.run_once(check=False).posted == 1
    held_back = thread(rig, root_015)[-1]
    assert held_back.payload["text"] == f"{FIN_015}: 1 change"
    assert "Credential theft" in all_text(held_back.payload)
    assert " paused" not in all_text(watches_ack(rig))
    assert ts(root_014) != ts(root_015)


def sections_of(ack: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in ack["blocks"] if b["type"] == "section"]


def wait_for_target(rig: Harness, target: str, timeout: float = 10.0) -> Posted:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in rig.standin.posts if p.target == target]
        if found:
            rig.wait_idle()
            return found[-1]
        time.sleep(0.01)
    raise TimeoutError(target)


@pytest.mark.parametrize("device", ["ws-fin-014", FIN_014, "WS-FIN-014", "c7663fe2de4691490a39131d227c25d9dc2bc9d6"])
def test_unwatch_posts_a_final_reply_and_the_watch_is_gone(rig: Harness, device: str) -> None:
    root, _, _ = start(rig, "watch ws-fin-014")
    calls = rig.tenant.calls
    rig.command(f"unwatch {device}", "u1")
    note = wait_for_target(rig, "u1")
    assert note.payload["text"] == f"Stopped watching {FIN_014}."
    assert note.payload["replace_original"] is False
    assert rig.tenant.calls == calls  # finding the watch needs no Defender call
    assert rig.bot.store.live_watches() == []
    assert watches_ack(rig)["text"] == "No watches in this channel"

    assert rig.bot.poller.run_once(check=False).posted == 1
    [final] = thread(rig, root)[1:]
    assert final.payload["text"] == f"{FIN_014}: watch ended"
    assert sections(final) == [":stop_sign: Watch ended: stopped by <@U0ALICE>."]
    assert violations(final.message) == []

    # Nothing more is posted for it, whatever changes.
    rig.tenant.add_alert(machine_id(rig.tenant, FIN_014), title="After the end", severity="High")
    before = len(rig.standin.posts)
    rig.bot.poller.run_once()
    assert rig.standin.posts[before:] == []


@pytest.mark.parametrize(
    ("text", "channel"),
    [("unwatch ws-fin-015", CHANNEL), ("unwatch ws-fin", CHANNEL), ("unwatch ws-fin-014", "C0OTHER")],
)
def test_unwatch_of_something_not_watched_here_changes_nothing(rig: Harness, text: str, channel: str) -> None:
    start(rig, "watch ws-fin-014")
    rig.dispatch(rig.requests.command(text, response_url=rig.standin.response_url("u1"), channel_id=channel))
    note = wait_for_target(rig, "u1")
    assert note.payload["text"] == f"No watch on {text.split()[1]} in this channel."
    assert len(rig.bot.store.live_watches(CHANNEL)) == 1


# -- buttons and mentions ---------------------------------------------------------------------------------------


def test_watch_button_then_unwatch_button(rig: Harness) -> None:
    rig.command("ws-fin-015", "lookup")
    [card] = rig.standin.wait_for_posts(1)
    rig.wait_idle()
    rig.dispatch(
        rig.requests.block_action(
            actions.WATCH, buttons(card)[actions.WATCH]["value"], response_url=rig.standin.response_url("watch-button")
        )
    )
    confirmation = wait_for_target(rig, "watch-button")
    assert confirmation.payload["text"].startswith(f"Watching {FIN_015} until ")
    assert confirmation.payload["response_type"] == "ephemeral"
    [root] = top_level(rig)
    assert header(root).startswith(FIN_015)
    assert thread(rig, root)[0].payload["text"] == f"Watching {FIN_015}"

    # Bob presses Unwatch on the root card.
    unwatch = buttons(root)[actions.UNWATCH]["value"]
    press = rig.requests.block_action(
        actions.UNWATCH, unwatch, response_url=rig.standin.response_url("unwatch-button"), user_id="U0BOB"
    )
    assert rig.dispatch(press).status == 200
    note = wait_for_target(rig, "unwatch-button")
    assert (note.payload["text"], note.payload["response_type"]) == (f"Stopped watching {FIN_015}.", "ephemeral")
    assert rig.bot.store.live_watches() == []
    rig.bot.poller.run_once(check=False)
    assert sections(thread(rig, root)[-1]) == [":stop_sign: Watch ended: stopped by <@U0BOB>."]

    # A second press finds nothing to stop.
    rig.dispatch(rig.requests.block_action(actions.UNWATCH, unwatch, response_url=rig.standin.response_url("again")))
    assert wait_for_target(rig, "again").payload["text"] == f"No watch on {rig.bot.seal.open(unwatch)} in this channel."


def test_mentions_start_list_and_stop_watches(rig: Harness) -> None:
    rig.event(rig.requests.mention("watch <http://ws-fin-014|ws-fin-014> for:1h", ts="1700000000.000100"))
    root, note, confirmation = rig.standin.wait_for_posts(3)
    rig.wait_idle()
    assert (root.via, root.target) == ("chat.postMessage", CHANNEL)
    assert "thread_ts" not in root.payload
    assert note.payload["thread_ts"] == ts(root)
    # The confirmation answers the mention in its own thread, like every mention.
    assert (confirmation.via, confirmation.payload["thread_ts"]) == ("chat.postMessage", "1700000000.000100")
    assert confirmation.payload["text"].startswith(f"Watching {FIN_014} until ")
    [watch] = rig.bot.store.live_watches(CHANNEL)
    assert watch.root_ts == ts(root)

    rig.event(rig.requests.mention("watches", ts="1700000000.000200"))
    listed = rig.standin.wait_for_posts(4)[3]
    assert (listed.payload["thread_ts"], listed.payload["text"]) == ("1700000000.000200", "1 watch in this channel")
    assert f"*{FIN_014}* by <@U0ALICE>" in all_text(listed.payload)

    rig.event(rig.requests.mention("unwatch ws-fin-014", ts="1700000000.000300"))
    # Stopping also redraws the root card (chat.update) as a plain card; the confirmation is the threaded answer.
    posts = rig.standin.wait_for_posts(6)
    [stopped] = [p for p in posts if p.payload.get("thread_ts") == "1700000000.000300"]
    [redrawn] = [p for p in posts if p.via == "chat.update"]
    assert "Unwatch" not in all_text(redrawn.payload)
    assert (stopped.payload["thread_ts"], stopped.payload["text"]) == (
        "1700000000.000300",
        f"Stopped watching {FIN_014}.",
    )
    assert rig.bot.store.live_watches() == []


# -- exactly once across a restart ------------------------------------------------------------------------------


def test_a_reply_that_reached_slack_before_a_crash_is_not_posted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, defender_api: str
) -> None:
    state_url = f"sqlite:///{tmp_path}/watches.db"
    standin = SlackStandIn()
    first = Harness(standin, make_bot(standin, state_url=state_url, api=defender_api), SlackRequests(SIGNING_SECRET))
    try:
        root, _, _ = start(first)
        first.tenant.add_alert(machine_id(first.tenant, FIN_014), title="Posted just before the crash", severity="High")
        real = SlackWatches.post_reply

        def crash_after_posting(self: SlackWatches, *args: Any) -> Any:
            real(self, *args)
            raise RuntimeError("the process died before recording the post")

        monkeypatch.setattr(SlackWatches, "post_reply", crash_after_posting)
        with pytest.raises(RuntimeError):
            first.bot.poller.run_once()
        monkeypatch.undo()
        assert len(thread(first, root)) == 2  # the note and the reply: Slack has it
        first.bot.close()

        # The restarted bot finds the reply pending, looks in the thread, and records it instead of posting.
        second = Harness(
            standin,
            make_bot(standin, tenant=first.tenant, state_url=state_url, api=defender_api),
            SlackRequests(SIGNING_SECRET),
        )
        try:
            report = second.bot.poller.run_once(check=False)
            assert (report.ran, report.posted, report.pending) == (True, 1, 0)
            assert len(thread(second, root)) == 2
            [(_, args)] = [c for c in standin.calls if c[0] == "conversations.replies"]
            assert (args["channel"], args["ts"]) == (CHANNEL, ts(root))
            assert str(args["include_all_metadata"]).lower() in ("true", "1")
            # Later checks carry on in the same thread.
            second.tenant.add_alert(machine_id(second.tenant, FIN_014), title="After the restart", severity="Low")
            assert second.bot.poller.run_once().posted == 1
            assert "After the restart" in all_text(thread(second, root)[-1].payload)
            assert len(top_level(second)) == 1
        finally:
            second.close()
    finally:
        close_soon(standin)


def test_a_reply_is_posted_once_after_a_crash_in_a_public_channel_the_bot_never_joined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, defender_api: str
) -> None:
    """A watch started by a version that did not join channels: the thread lookup answers `not_in_channel` until the
    bot joins, which it then does, instead of concluding "not posted" and posting the reply again."""
    state_url = f"sqlite:///{tmp_path}/watches.db"
    standin = SlackStandIn()
    first = Harness(standin, make_bot(standin, state_url=state_url, api=defender_api), SlackRequests(SIGNING_SECRET))
    try:
        root, _, _ = start(first)
        standin.channels.joined.discard(CHANNEL)
        first.tenant.add_alert(machine_id(first.tenant, FIN_014), title="Posted just before the crash", severity="High")
        real = SlackWatches.post_reply

        def crash_after_posting(self: SlackWatches, *args: Any) -> Any:
            real(self, *args)
            raise RuntimeError("the process died before recording the post")

        monkeypatch.setattr(SlackWatches, "post_reply", crash_after_posting)
        with pytest.raises(RuntimeError):
            first.bot.poller.run_once()
        monkeypatch.undo()
        first.bot.close()
        second = Harness(
            standin,
            make_bot(standin, tenant=first.tenant, state_url=state_url, api=defender_api),
            SlackRequests(SIGNING_SECRET),
        )
        try:
            report = second.bot.poller.run_once(check=False)
            assert (report.posted, report.pending) == (1, 0)
            assert len(thread(second, root)) == 2  # the note and the one reply
            methods = [method for method, _ in standin.calls]
            replies = [i for i, method in enumerate(methods) if method == "conversations.replies"]
            assert len(replies) == 2 and methods.index("conversations.join", replies[0]) < replies[1]
        finally:
            second.close()
    finally:
        close_soon(standin)


def test_the_stand_in_lists_metadata_only_when_asked_and_threads_only_to_members() -> None:
    with SlackStandIn() as standin:
        client = WebClient(token=standin.bot_token, base_url=standin.api_url)
        posted = client.chat_postMessage(
            channel="C0PUBLIC", text="card", metadata={"event_type": "e", "event_payload": {}}
        )
        with pytest.raises(SlackApiError) as refused:
            client.conversations_replies(channel="C0PUBLIC", ts=posted["ts"], include_all_metadata=True)
        assert refused.value.response["error"] == "not_in_channel"
        assert client.conversations_join(channel="C0PUBLIC")["ok"] is True
        assert client.conversations_join(channel="C0PUBLIC")["warning"] == "already_in_channel"
        [plain] = client.conversations_replies(channel="C0PUBLIC", ts=posted["ts"])["messages"]
        assert "metadata" not in plain
        [full] = client.conversations_replies(channel="C0PUBLIC", ts=posted["ts"], include_all_metadata=True)[
            "messages"
        ]
        assert full["metadata"]["event_type"] == "e"
        standin.channels.private.add("C0PRIVATE")
        for call in (
            lambda: client.chat_postMessage(channel="C0PRIVATE", text="x"),
            lambda: client.conversations_join(channel="C0PRIVATE"),
        ):
            with pytest.raises(SlackApiError) as hidden:
                call()
            assert hidden.value.response["error"] == "channel_not_found"


def test_test_bots_keep_their_watches_in_memory(rig: Harness) -> None:
    assert rig.bot.runtime.settings.state.url == MEMORY_STATE_URL


# -- the background poller and the real HTTP server -------------------------------------------------------------


def test_end_to_end_through_the_http_server(rig: Harness) -> None:
    server = HttpServer(wsgi_app(rig.bot.health, SlackRequestHandler(rig.bot.app)), "127.0.0.1", 0).start()
    try:
        with httpx.Client(timeout=10.0) as client:
            body, headers = rig.requests.command("watch ws-fin-014 for:4h", response_url=rig.standin.response_url("h"))
            response = client.post(f"http://127.0.0.1:{server.port}/slack/events", content=body, headers=headers)
            assert response.status_code == 200
            assert response.json()["text"] == "Setting up a watch on ws-fin-014…"
            root, _, confirmation = rig.standin.wait_for_posts(3)
            assert confirmation.target == "h"
            health = client.get(f"http://127.0.0.1:{server.port}/healthz").json()
            assert health["watches"] == {"live": 1, "poll_interval_seconds": 60.0}

            rig.tenant.add_alert(machine_id(rig.tenant, FIN_014), title="Lateral movement", severity="High")
            assert rig.bot.poller.run_once().posted == 1
            reply = thread(rig, root)[-1]
            assert reply.payload["text"] == f"{FIN_014}: 1 change"
            assert "Lateral movement" in all_text(reply.payload)
    finally:
        close_server(server)


def test_the_background_poller_checks_at_once_and_delivers_an_unwatch_without_waiting(defender_api: str) -> None:
    for rig in harness(api=defender_api):
        root, _, _ = start(rig)
        rig.tenant.add_alert(machine_id(rig.tenant, FIN_014), title="Seen by the background thread", severity="High")
        rig.bot.start_background()  # the first check runs immediately, the next one a minute later
        deadline = time.monotonic() + 10
        while len(thread(rig, root)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "Seen by the background thread" in all_text(thread(rig, root)[1].payload)

        rig.command("unwatch ws-fin-014", "u1")
        deadline = time.monotonic() + 5  # far less than the 60 s interval: unwatch wakes the poller
        while len(thread(rig, root)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sections(thread(rig, root)[2]) == [":stop_sign: Watch ended: stopped by <@U0ALICE>."]


def test_refresh_on_a_root_card_keeps_it_a_root_card(rig: Harness) -> None:
    root, _note, _confirmation = start(rig)
    [refresh] = [
        element["value"]
        for block in root.payload["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element["action_id"] == actions.REFRESH
    ]
    press = rig.requests.block_action(
        actions.REFRESH, refresh, response_url=rig.standin.response_url("root-refresh"), message_ts=ts(root)
    )
    rig.dispatch(press)
    redrawn = wait_for_target(rig, "root-refresh")
    assert redrawn.payload["replace_original"] is True
    assert any("Watched by <@U0ALICE>" in line for line in context_lines(redrawn))
    labels = [e["text"]["text"] for b in redrawn.payload["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert labels == ["Refresh", "Open in Defender", "Unwatch"]

    # The same button on a plain lookup card (another message) stays a plain card.
    rig.dispatch(rig.requests.block_action(actions.REFRESH, refresh, response_url=rig.standin.response_url("plain")))
    plain = wait_for_target(rig, "plain")
    assert not any("Watched by" in line for line in context_lines(plain))
