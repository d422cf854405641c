"""Watch cards: one line per change, the bounded follow-up, the started note and the channel's list."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from bot.slack import mrkdwn
from bot.slack.watch_cards import (
    MAX_CHANGE_LINES,
    MAX_WATCH_LINES,
    change_line,
    followup_card,
    watch_started_card,
    watches_card,
)
from bot.state.watches import Change, ChangeKind, Watch, WatchStatus
from tests.doubles.cards import (
    CONTEXT,
    HOST,
    HOSTILE_TITLES,
    MID,
    NOW,
    PORTAL,
    TENANT,
    WATCHER,
    assert_sendable,
    blocks_of,
    context_texts,
    section_texts,
    without_watcher,
)


def watch_of(**fields: Any) -> Watch:
    values: dict[str, Any] = {
        "id": 1,
        "channel": "C0INCIDENT",
        "machine_id": MID,
        "device_name": HOST,
        "filter_text": "",
        "created_by": WATCHER,
        "created_at": NOW,
        "expires_at": NOW + timedelta(hours=8),
        "root_ts": "1.000001",
        "status": WatchStatus.ACTIVE,
        "pause_reason": None,
        "last_checked_at": None,
        **fields,
    }
    return Watch(**values)


def change(kind: ChangeKind, n: int = 1, **fields: Any) -> Change:
    values: dict[str, Any] = {"alert_id": f"da{n}", "title": f"Alert {n}", "severity": "High", **fields}
    return Change(kind, **values)


@pytest.mark.parametrize(
    ("change_", "line"),
    [
        (
            change(ChangeKind.NEW, category="Ransomware"),
            f":red_circle: *New alert* · High · <{PORTAL}/alerts/da1?tid={TENANT}|Alert 1> · Ransomware",
        ),
        (
            change(ChangeKind.NEW, severity="Informational"),
            f":large_blue_circle: *New alert* · Informational · <{PORTAL}/alerts/da1?tid={TENANT}|Alert 1>",
        ),
        (
            change(ChangeKind.STATUS, old="New", new="InProgress"),
            f":arrows_counterclockwise: <{PORTAL}/alerts/da1?tid={TENANT}|Alert 1>: New → *In progress*",
        ),
        (
            change(ChangeKind.STATUS, old="InProgress", new="Resolved", classification="TruePositive",
                   determination="Malware"),
            f":arrows_counterclockwise: <{PORTAL}/alerts/da1?tid={TENANT}|Alert 1>: In progress → *Resolved* "
            "(TruePositive / Malware)",
        ),
        (
            change(ChangeKind.ASSIGNMENT, old=None, new="secops@contoso.com"),
            f":bust_in_silhouette: <{PORTAL}/alerts/da1?tid={TENANT}|Alert 1>: assigned to secops@contoso.com "
            "(was unassigned)",
        ),
        (
            change(ChangeKind.ASSIGNMENT, old="j.doe@contoso.com", new=None),
            f":bust_in_silhouette: <{PORTAL}/alerts/da1?tid={TENANT}|Alert 1>: assigned to nobody "
            "(was j.doe@contoso.com)",
        ),
        (Change(ChangeKind.ENDED, "-", new="expired"), ":stop_sign: Watch ended: expired."),
        (Change(ChangeKind.ENDED, "-", old=WATCHER, new="stopped"),
         f":stop_sign: Watch ended: stopped by <@{WATCHER}>."),
    ],
)  # fmt: skip
def test_change_lines(change_: Change, line: str) -> None:
    assert change_line(change_, CONTEXT) == line


@pytest.mark.parametrize("count", [1, 2, MAX_CHANGE_LINES, MAX_CHANGE_LINES + 1, 200])
def test_followup_is_one_bounded_reply(count: int) -> None:
    message = followup_card(HOST, [change(ChangeKind.NEW, n) for n in range(count)], CONTEXT)
    assert_sendable(message)
    assert message.text == f"{HOST}: {count} change{'' if count == 1 else 's'}"
    assert len(section_texts(message)) == min(count, MAX_CHANGE_LINES)
    more = [e["text"] for b in blocks_of(message, "context") for e in b["elements"]]
    assert more == ([f"…and {count - MAX_CHANGE_LINES} more changes"] if count > MAX_CHANGE_LINES else [])


def test_followup_of_an_ended_watch() -> None:
    message = followup_card(HOST, [Change(ChangeKind.ENDED, "-", new="expired")], CONTEXT)
    assert message.text == f"{HOST}: watch ended"


@pytest.mark.parametrize("hostile", HOSTILE_TITLES)
def test_hostile_text_in_every_change_field_is_escaped(hostile: str) -> None:
    changes = [
        change(ChangeKind.NEW, title=hostile, category=hostile, severity=hostile),
        change(ChangeKind.STATUS, title=hostile, old=hostile, new="Resolved", classification=hostile,
               determination=hostile),
        change(ChangeKind.ASSIGNMENT, title=hostile, old=hostile, new=hostile),
        Change(ChangeKind.ENDED, "-", old=hostile, new=hostile),
    ]  # fmt: skip
    assert_sendable(followup_card(hostile, changes, CONTEXT))
    assert_sendable(watch_started_card(watch_of(device_name=hostile, created_by=hostile), hostile))


def test_watch_started_note() -> None:
    message = watch_started_card(watch_of(filter_text="severity:high status:new"), WATCHER)
    assert message.text == f"Watching {HOST}"
    assert section_texts(message) == [
        f":eyes: <@{WATCHER}> is watching *{HOST}* until {mrkdwn.date(NOW + timedelta(hours=8))}. "
        "Only severity: High · status: New is reported. New alerts and status changes will appear in this thread."
    ]


def test_watches_list() -> None:
    assert section_texts(watches_card([])) == ["No device is watched in this channel."]
    watches = [
        watch_of(),
        watch_of(id=2, device_name="<!here>", filter_text="severity:high", last_checked_at=NOW,
                 status=WatchStatus.PAUSED, pause_reason="the channel is archived"),
    ]  # fmt: skip
    message = watches_card(watches)
    assert_sendable(without_watcher(message))
    assert message.text == "2 watches in this channel"
    first, second = section_texts(message)[1:]
    assert first == (
        f"• *{HOST}* by <@{WATCHER}> since {mrkdwn.date(NOW)}, until {mrkdwn.date(NOW + timedelta(hours=8))}, "
        "last check not yet"
    )
    assert second.startswith("• *&lt;!here&gt;* by ")
    paused = ":double_vertical_bar: paused: the channel is archived"
    assert second.endswith(f"last check {mrkdwn.date(NOW, '{time}')} · severity: High · {paused}")


def test_watches_list_is_bounded() -> None:
    message = watches_card([watch_of(id=n) for n in range(MAX_WATCH_LINES + 5)])
    assert_sendable(without_watcher(message))
    assert len(section_texts(message)) == 1 + MAX_WATCH_LINES
    assert context_texts(message, -1) == ["…and 5 more"]
