"""What changed for a watched device: a pure comparison of the alerts seen now with the state remembered."""

from __future__ import annotations

from collections.abc import Iterable

from bot.alerts.query import AlertFilters
from bot.defender.models import Alert, AlertStatus
from bot.state.watches import AlertState, Change, ChangeKind


def state_of(alert: Alert) -> AlertState:
    return AlertState(alert.status.value, alert.assigned_to, alert.last_update)


def _reported(alert: Alert, filters: AlertFilters) -> bool:
    """A watch's filters choose what is reported (severity, status); time windows do not apply."""
    if filters.severities and alert.severity not in filters.severities:
        return False
    return not filters.statuses or alert.status in filters.statuses


def _change(kind: ChangeKind, alert: Alert, old: str | None, new: str | None) -> Change:
    resolved = alert.status is AlertStatus.RESOLVED
    return Change(
        kind=kind,
        alert_id=alert.id,
        title=alert.title,
        severity=alert.severity.value,
        category=alert.category or "",
        old=old,
        new=new,
        classification=alert.classification.value if resolved and alert.classification else None,
        determination=alert.determination if resolved else None,
        at=alert.last_update.isoformat() if alert.last_update else None,
    )


def compare(
    known: dict[str, AlertState], alerts: Iterable[Alert], filters: AlertFilters
) -> tuple[dict[str, AlertState], list[Change]]:
    """The state to remember and the changes to report, for the alerts seen in this check.

    An update older than what is remembered (overlapping polls, out-of-order pages) is ignored, so a
    status never appears to go backwards.
    """
    state: dict[str, AlertState] = {}
    changes: list[Change] = []
    for alert in alerts:
        before = known.get(alert.id)
        now = state_of(alert)
        if before is not None and before.last_update and now.last_update and now.last_update < before.last_update:
            continue
        state[alert.id] = now
        if not _reported(alert, filters):
            continue
        if before is None:
            changes.append(_change(ChangeKind.NEW, alert, None, now.status))
            continue
        if before.status != now.status:
            changes.append(_change(ChangeKind.STATUS, alert, before.status, now.status))
        if before.assigned_to != now.assigned_to:
            changes.append(_change(ChangeKind.ASSIGNMENT, alert, before.assigned_to, now.assigned_to))
    return state, changes


def baseline(alerts: Iterable[Alert]) -> dict[str, AlertState]:
    """The state at the start of a watch: everything already there is known, nothing is reported."""
    return {alert.id: state_of(alert) for alert in alerts}
