"""`compare` and `baseline`: what a watch reports for the alerts one check saw, and what it remembers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.alerts.query import AlertFilters, parse_query
from bot.defender.models import Alert, parse_alert
from bot.state.watches import AlertState, Change, ChangeKind
from bot.watch.changes import baseline, compare

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MID = "c" * 40
ALL = AlertFilters()


def stamp(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def alert(alert_id: str = "da1", minutes: float = 0, **fields: Any) -> Alert:
    record = {
        "id": alert_id,
        "title": f"Alert {alert_id}",
        "severity": "High",
        "status": "New",
        "category": "Malware",
        "machineId": MID,
        "lastUpdateTime": stamp(minutes),
        **fields,
    }
    return parse_alert(record)


def filters(text: str) -> AlertFilters:
    return parse_query(f"{MID} {text}").filters


def test_a_new_alert_is_reported_once_as_new() -> None:
    seen = alert("da1", 1, severity="Medium", category="Execution")
    state, changes = compare({}, [seen], ALL)
    assert changes == [
        Change(
            ChangeKind.NEW,
            "da1",
            title="Alert da1",
            severity="Medium",
            category="Execution",
            old=None,
            new="New",
            at=(T0 + timedelta(minutes=1)).isoformat(),
        )
    ]
    assert state == {"da1": AlertState("New", None, T0 + timedelta(minutes=1))}
    assert compare(state, [seen], ALL) == (state, [])  # seen again (overlapping poll): nothing new


def test_a_status_change_is_reported_with_old_and_new() -> None:
    known = {"da1": AlertState("New", None, T0)}
    state, [change] = compare(known, [alert("da1", 5, status="InProgress")], ALL)
    assert (change.kind, change.old, change.new) == (ChangeKind.STATUS, "New", "InProgress")
    assert (change.classification, change.determination) == (None, None)
    assert change.at == (T0 + timedelta(minutes=5)).isoformat()
    assert state["da1"] == AlertState("InProgress", None, T0 + timedelta(minutes=5))


def test_resolving_carries_classification_and_determination() -> None:
    known = {"da1": AlertState("InProgress", "bob@contoso.com", T0)}
    resolved = alert(
        "da1",
        9,
        status="Resolved",
        assignedTo="bob@contoso.com",
        classification="TruePositive",
        determination="Malware",
    )
    _, [change] = compare(known, [resolved], ALL)
    assert (change.kind, change.old, change.new) == (ChangeKind.STATUS, "InProgress", "Resolved")
    assert (change.classification, change.determination) == ("TruePositive", "Malware")


def test_verdict_is_only_reported_on_resolved_alerts() -> None:
    known = {"da1": AlertState("New", None, T0)}
    triaged = alert("da1", 3, status="InProgress", classification="FalsePositive", determination="Clean")
    _, [change] = compare(known, [triaged], ALL)
    assert (change.classification, change.determination) == (None, None)


def test_an_assignment_change_is_reported() -> None:
    known = {"da1": AlertState("New", None, T0)}
    _, [change] = compare(known, [alert("da1", 2, assignedTo="amy@contoso.com")], ALL)
    assert (change.kind, change.old, change.new) == (ChangeKind.ASSIGNMENT, None, "amy@contoso.com")

    known = {"da1": AlertState("New", "amy@contoso.com", T0)}
    _, [change] = compare(known, [alert("da1", 2, assignedTo="bob@contoso.com")], ALL)
    assert (change.old, change.new) == ("amy@contoso.com", "bob@contoso.com")


def test_status_and_assignment_in_one_update_are_two_changes_with_different_keys() -> None:
    known = {"da1": AlertState("New", None, T0)}
    _, changes = compare(known, [alert("da1", 4, status="InProgress", assignedTo="bob@contoso.com")], ALL)
    assert [c.kind for c in changes] == [ChangeKind.STATUS, ChangeKind.ASSIGNMENT]
    assert len({c.key for c in changes}) == 2


def test_an_unchanged_alert_reports_nothing_but_remembers_the_newer_update_time() -> None:
    known = {"da1": AlertState("New", None, T0)}
    state, changes = compare(known, [alert("da1", 7)], ALL)  # a comment, say: updated, same status and owner
    assert changes == []
    assert state == {"da1": AlertState("New", None, T0 + timedelta(minutes=7))}


def test_an_update_older_than_the_remembered_one_is_ignored() -> None:
    known = {"da1": AlertState("Resolved", "bob@contoso.com", T0 + timedelta(minutes=10))}
    stale = alert("da1", 5, status="InProgress", assignedTo="amy@contoso.com")  # an overlapping poll's old page
    assert compare(known, [stale], ALL) == ({}, [])


def test_alerts_not_in_this_check_are_left_alone() -> None:
    known = {"da1": AlertState("New", None, T0), "da2": AlertState("New", None, T0)}
    state, changes = compare(known, [alert("da2", 1, status="Resolved")], ALL)
    assert list(state) == ["da2"]  # the store keeps da1 as it was
    assert [c.alert_id for c in changes] == ["da2"]


def test_severity_filter_limits_reports_but_not_the_state() -> None:
    high_only = filters("severity:high")
    seen = [alert("da1", 1, severity="Low"), alert("da2", 1, severity="High"), alert("da3", 1, severity="Medium")]
    state, changes = compare({}, seen, high_only)
    assert [c.alert_id for c in changes] == ["da2"]
    assert set(state) == {"da1", "da2", "da3"}  # everything is remembered, so later checks compare correctly

    # The low alert is resolved later: still not reported, and not mistaken for a new alert either.
    state, changes = compare(state, [alert("da1", 2, severity="Low", status="Resolved")], high_only)
    assert changes == []
    assert state["da1"].status == "Resolved"


def test_status_filter_limits_reports() -> None:
    resolved_only = filters("status:resolved")
    known = {"da1": AlertState("New", None, T0), "da2": AlertState("New", None, T0)}
    seen = [alert("da1", 1, status="InProgress"), alert("da2", 1, status="Resolved")]
    state, changes = compare(known, seen, resolved_only)
    assert [(c.alert_id, c.new) for c in changes] == [("da2", "Resolved")]
    assert state["da1"] == AlertState("InProgress", None, T0 + timedelta(minutes=1))


def test_a_since_filter_does_not_hide_changes() -> None:
    _, changes = compare({}, [alert("da1", 1)], filters("since:1h"))
    assert [c.kind for c in changes] == [ChangeKind.NEW]


def test_flapping_status_is_reported_every_time_with_distinct_keys() -> None:
    state: dict[str, AlertState] = {"da1": AlertState("New", None, T0)}
    reported: list[Change] = []
    for minute, status in enumerate(["InProgress", "New", "InProgress", "New"], start=1):
        state_now, changes = compare(state, [alert("da1", minute, status=status)], ALL)
        state = {**state, **state_now}
        reported.extend(changes)
    assert [(c.old, c.new) for c in reported] == [
        ("New", "InProgress"),
        ("InProgress", "New"),
        ("New", "InProgress"),
        ("InProgress", "New"),
    ]
    assert len({c.key for c in reported}) == 4  # A→B twice is two changes, not one deduplicated away


def test_the_key_identifies_a_change_by_what_and_when() -> None:
    one = compare({}, [alert("da1", 1)], ALL)[1][0]
    again = compare({}, [alert("da1", 1)], ALL)[1][0]
    later = compare({}, [alert("da1", 2)], ALL)[1][0]
    assert one.key == again.key
    assert one.key != later.key
    assert one.key.startswith("new|da1|New|")


def test_alerts_without_update_time_still_compare() -> None:
    undated = parse_alert({"id": "da1", "title": "x", "severity": "High", "status": "Resolved", "machineId": MID})
    known = {"da1": AlertState("New", None, T0)}
    state, [change] = compare(known, [undated], ALL)
    assert (change.old, change.new, change.at) == ("New", "Resolved", None)
    assert state == {"da1": AlertState("Resolved", None, None)}


def test_baseline_remembers_everything_and_reports_nothing() -> None:
    seen = [alert("da1", 1), alert("da2", 2, status="Resolved", assignedTo="bob@contoso.com")]
    known = baseline(seen)
    assert known == {
        "da1": AlertState("New", None, T0 + timedelta(minutes=1)),
        "da2": AlertState("Resolved", "bob@contoso.com", T0 + timedelta(minutes=2)),
    }
    assert compare(known, seen, ALL) == ({"da1": known["da1"], "da2": known["da2"]}, [])
    assert baseline([]) == {}
