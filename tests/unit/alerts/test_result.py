"""`DeviceAlerts` and `display_order`: what one lookup answers, in the order people read it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.alerts.query import AlertFilters
from bot.alerts.result import DeviceAlerts, display_order
from bot.defender.models import Alert, AlertStatus, Machine, Severity, parse_alert, parse_machine


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def alert(**fields: Any) -> Alert:
    return parse_alert({"id": fields.pop("id", "a1"), **fields})


def test_display_order_unresolved_first_then_severity_then_recent_activity() -> None:
    alerts = [
        alert(id="resolved-high", status="Resolved", severity="High", lastUpdateTime="2021-01-09T00:00:00Z"),
        alert(id="new-low-recent", status="New", severity="Low", lastUpdateTime="2021-01-08T00:00:00Z"),
        alert(id="new-high-old", status="New", severity="High", lastUpdateTime="2021-01-01T00:00:00Z"),
        alert(id="progress-high-recent", status="InProgress", severity="High", lastUpdateTime="2021-01-05T00:00:00Z"),
        alert(id="new-medium-no-time", status="New", severity="Medium"),
        alert(id="new-medium-recent", status="New", severity="Medium", lastEventTime="2021-01-02T00:00:00Z"),
        alert(id="unknown-sev", status="New", severity="Critical", lastUpdateTime="2021-01-10T00:00:00Z"),
        alert(id="unspecified", status="New", severity="UnSpecified", lastUpdateTime="2021-01-09T00:00:00Z"),
        alert(id="new-info", status="New", severity="Informational", lastUpdateTime="2021-01-01T00:00:00Z"),
        alert(id="resolved-low", status="Resolved", severity="Low", lastUpdateTime="2021-01-10T00:00:00Z"),
        alert(id="resolved-high-older", status="Resolved", severity="High", lastUpdateTime="2021-01-03T00:00:00Z"),
    ]
    ordered = [a.id for a in display_order(alerts)]
    assert ordered == [
        "progress-high-recent",
        "new-high-old",
        "new-medium-recent",
        "new-medium-no-time",
        "new-low-recent",
        "new-info",
        "unknown-sev",  # unknown severity ranks with unspecified, then most recent first
        "unspecified",
        "resolved-high",
        "resolved-high-older",
        "resolved-low",
    ]
    assert display_order(reversed(alerts)) == display_order(alerts)
    assert display_order([]) == ()


def test_display_order_ties_break_on_id() -> None:
    same = {"status": "New", "severity": "Low", "lastUpdateTime": "2021-01-01T00:00:00Z"}
    assert [a.id for a in display_order([alert(id="b", **same), alert(id="a", **same)])] == ["a", "b"]


def _device_alerts(alerts: list[Alert], machine: Machine | None = None) -> DeviceAlerts:
    return DeviceAlerts(
        machine_id="111e6dd8c833c8a052ea231ec1b19adaf497b625",
        machine=machine,
        alerts=display_order(alerts),
        total=len(alerts),
        filters=AlertFilters(),
        fetched_at=utc(2021, 1, 27),
        age=timedelta(0),
        from_cache=False,
    )


def test_device_alerts_counts_and_names() -> None:
    alerts = [
        alert(id="1", severity="Low", status="New", computerDnsName="ws1.contoso.com"),
        alert(id="2", severity="High", status="Resolved", computerDnsName="ws1.contoso.com"),
        alert(id="3", severity="Low", status="InProgress", computerDnsName="ws1.contoso.com"),
        alert(id="4", severity="Critical", status="New"),
    ]
    result = _device_alerts(alerts)
    assert list(result.severity_counts().items()) == [(Severity.HIGH, 1), (Severity.LOW, 2), (Severity.UNKNOWN, 1)]
    assert list(result.status_counts().items()) == [
        (AlertStatus.NEW, 2),
        (AlertStatus.IN_PROGRESS, 1),
        (AlertStatus.RESOLVED, 1),
    ]
    assert result.display_name == "ws1.contoso.com"
    assert result.stale is False
    two_names = _device_alerts([alert(id="1", computerDnsName="a"), alert(id="2", computerDnsName="b")])
    assert two_names.display_name == "111e6dd8c833c8a052ea231ec1b19adaf497b625"
    with_machine = _device_alerts(alerts, parse_machine({"id": "m", "computerDnsName": "named.contoso.com"}))
    assert with_machine.display_name == "named.contoso.com"
    assert _device_alerts([], parse_machine({"id": "M1"})).display_name == "m1"
