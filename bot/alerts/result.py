"""What a device lookup returns: the device, its alerts in display order, and how fresh the data is."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.alerts.query import AlertFilters
from bot.defender.models import Alert, AlertStatus, Machine, Severity

_EPOCH = datetime.fromtimestamp(0).astimezone()


def display_order(alerts: Iterable[Alert]) -> tuple[Alert, ...]:
    """Unresolved first, then most severe, then most recent activity: what a responder looks at first."""
    return tuple(
        sorted(
            alerts,
            key=lambda a: (not a.is_open, -a.severity.rank, -(a.last_activity or _EPOCH).timestamp(), a.id),
        )
    )


@dataclass(frozen=True, slots=True)
class DeviceAlerts:
    """One device's alerts as the bot will show them.

    `alerts` holds the alerts that match `filters`, in display order; `total` counts all of the
    device's alerts. `stale_reason` is set when Defender could not be asked and older data is shown.
    """

    machine_id: str
    machine: Machine | None
    alerts: tuple[Alert, ...]
    total: int
    filters: AlertFilters
    fetched_at: datetime
    age: timedelta
    from_cache: bool
    stale_reason: str | None = None

    @property
    def stale(self) -> bool:
        return self.stale_reason is not None

    @property
    def display_name(self) -> str:
        if self.machine is not None:
            return self.machine.display_name
        names = {a.computer_dns_name for a in self.alerts if a.computer_dns_name}
        return names.pop() if len(names) == 1 else self.machine_id

    def severity_counts(self) -> dict[Severity, int]:
        """Counts of the shown alerts per severity, most severe first, zeros left out."""
        counts = Counter(a.severity for a in self.alerts)
        return {s: counts[s] for s in sorted(counts, key=lambda s: (-s.rank, s.value))}

    def status_counts(self) -> dict[AlertStatus, int]:
        """Counts of the shown alerts per status in workflow order, zeros left out."""
        counts = Counter(a.status for a in self.alerts)
        return {s: counts[s] for s in AlertStatus if counts[s]}
