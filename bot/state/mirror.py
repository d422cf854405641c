"""Where the Graph alert mirror keeps its alerts: in the process (the default), or in Redis for every process.

The mirror (`bot.alerts.mirror`) decides when to read Graph; a `MirrorStore` only keeps what was read: alerts
by id, indexed by every device of their evidence, and the devices the evidence describes. Once a sync has read
everything it asked for, the store also commits its watermark (the newest `lastUpdateDateTime` seen) and when
it started. A sync that fails half-way commits neither, so the next one reads the same span again rather than
skip what it missed. The store keeps at most `max_alerts`, dropping the least recently updated.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from bot.defender.models import Alert, Machine

_T = TypeVar("_T")
MAX_ALERTS = 200_000  # about 400 MiB of parsed alerts in one process
_EPOCH = datetime.min.replace(tzinfo=UTC)


def updated_at(alert: Alert) -> datetime:
    """When an alert last changed, as far as the mirror orders and evicts alerts."""
    return alert.last_update or alert.created or _EPOCH


class MirrorStore(Protocol):
    def merge(self, alerts: Sequence[Alert], devices: Mapping[str, Machine]) -> None:
        """Keep each alert unless a more recently updated copy is kept already; remember the devices."""
        ...

    def device_alerts(self, machine_id: str) -> list[Alert]: ...
    def updated_since(self, since: datetime) -> list[Alert]: ...
    def device(self, machine_id: str) -> Machine | None: ...
    def device_named(self, hostname: str) -> Machine | None: ...
    def devices_named(self, prefix: str) -> list[Machine]: ...
    def watermark(self) -> datetime | None: ...
    def synced_at(self) -> datetime | None: ...

    def mark_synced(self, at: datetime, watermark: datetime | None) -> None:
        """A sync that started `at` read everything up to `watermark` (None: it found nothing newer)."""
        ...

    def alert_count(self) -> int: ...

    def single_flight(self, key: str, work: Callable[[], _T], landed: Callable[[], _T | None]) -> tuple[_T, bool]:
        """Run `work` once at a time for `key` (in the process, or in every process sharing the store)."""
        ...


class MemoryMirror:
    """A `MirrorStore` in this process's memory; thread-safe."""

    def __init__(self, max_alerts: int = MAX_ALERTS) -> None:
        self.max_alerts = max_alerts
        self.evicted = 0  # alerts dropped to stay within max_alerts, since start
        self._lock = threading.Lock()
        self._flight_lock = threading.Lock()
        self._alerts: dict[str, Alert] = {}
        self._by_device: dict[str, set[str]] = {}
        self._devices: dict[str, Machine] = {}
        self._names: dict[str, str] = {}  # lowercase hostname -> machine id
        self._watermark: datetime | None = None
        self._synced_at: datetime | None = None

    def merge(self, alerts: Sequence[Alert], devices: Mapping[str, Machine]) -> None:
        with self._lock:
            for alert in alerts:
                known = self._alerts.get(alert.id)
                if known is not None and updated_at(known) > updated_at(alert):
                    continue  # an older copy read again through the overlap
                self._alerts[alert.id] = alert
                for machine_id in alert.machine_ids:
                    self._by_device.setdefault(machine_id.lower(), set()).add(alert.id)
            for machine_id, machine in devices.items():
                self._devices[machine_id.lower()] = machine
                if machine.computer_dns_name:
                    self._names[machine.computer_dns_name.lower()] = machine_id.lower()
            self._evict()

    def _evict(self) -> None:
        excess = len(self._alerts) - self.max_alerts
        if excess <= 0:
            return
        for alert in sorted(self._alerts.values(), key=updated_at)[:excess]:
            del self._alerts[alert.id]
            for machine_id in alert.machine_ids:
                self._by_device.get(machine_id.lower(), set()).discard(alert.id)
        self.evicted += excess

    def device_alerts(self, machine_id: str) -> list[Alert]:
        with self._lock:
            return [self._alerts[alert_id] for alert_id in self._by_device.get(machine_id.lower(), ())]

    def updated_since(self, since: datetime) -> list[Alert]:
        with self._lock:
            return [alert for alert in self._alerts.values() if updated_at(alert) >= since]

    def device(self, machine_id: str) -> Machine | None:
        with self._lock:
            return self._devices.get(machine_id.lower())

    def device_named(self, hostname: str) -> Machine | None:
        with self._lock:
            machine_id = self._names.get(hostname.lower())
            return self._devices.get(machine_id) if machine_id else None

    def devices_named(self, prefix: str) -> list[Machine]:
        wanted = prefix.lower()
        with self._lock:
            return [self._devices[mid] for name, mid in self._names.items() if name.startswith(wanted)]

    def watermark(self) -> datetime | None:
        with self._lock:
            return self._watermark

    def synced_at(self) -> datetime | None:
        with self._lock:
            return self._synced_at

    def mark_synced(self, at: datetime, watermark: datetime | None) -> None:
        with self._lock:
            self._synced_at = at
            if watermark is not None and (self._watermark is None or watermark > self._watermark):
                self._watermark = watermark

    def alert_count(self) -> int:
        with self._lock:
            return len(self._alerts)

    def single_flight(self, key: str, work: Callable[[], _T], landed: Callable[[], _T | None]) -> tuple[_T, bool]:
        """One sync at a time: a caller that waited finds the mirror synced (`landed`) and does not sync again."""
        with self._flight_lock:
            found = landed()
            if found is not None:
                return found, True
            return work(), False
