"""Device alerts from Microsoft Graph: a mirror of the tenant's recent alerts, indexed by device.

Graph's security API has no "alerts of device X" (the device is inside each alert's evidence, and `$filter`
cannot reach it). So the bot reads the tenant's alerts updated in the last `backfill` once, then only what
changed: one delta call (`lastUpdateDateTime ge watermark - overlap`) at most every `max_age` seconds, shared
by every lookup and by the watch poller. A storm of lookups for many devices costs one call per `max_age`,
not one per device.

The watermark comes from Graph's own data (the newest `lastUpdateDateTime` seen), never from this host's
clock, and the overlap is generous: an alert that becomes visible late, or a clock that runs ahead, loses
nothing, and duplicates are merged by id. Devices are named by the alerts' evidence; a device with no recent
alert, or a name the mirror has not seen, is asked of advanced hunting (`DeviceInfo`).

Each process keeps its own mirror in memory (bounded by `max_alerts`, oldest updates dropped first); with
several processes the alert service's shared cache still shares the per-device lists.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.alerts.singleflight import SingleFlight
from bot.defender.errors import DeviceNotFound
from bot.defender.graph import GraphAlerts, GraphClient
from bot.defender.limits import Priority
from bot.defender.models import Alert, Machine
from bot.defender.refs import RefKind, parse_device_ref

log = logging.getLogger(__name__)

OVERLAP = timedelta(minutes=15)  # ingestion lag and clock skew: re-read this much before the watermark
MAX_CONTINUATIONS = 20  # reads on after an incomplete answer (50 pages of 1,000 each): 1,000,000 alerts at most
SKEW_WARNING = timedelta(minutes=1)
_EPOCH = datetime.min.replace(tzinfo=UTC)


def _updated(alert: Alert) -> datetime:
    return alert.last_update or alert.created or _EPOCH


class GraphAlertSource:
    """An `AlertSource` over `GraphClient`; thread-safe."""

    def __init__(
        self,
        client: GraphClient,
        *,
        backfill: timedelta = timedelta(days=30),
        max_age: float = 5.0,
        max_alerts: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._backfill = backfill
        self._max_age = max_age
        self._max_alerts = max_alerts
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        self._alerts: dict[str, Alert] = {}
        self._by_device: dict[str, set[str]] = {}
        self._devices: dict[str, Machine] = {}
        self._names: dict[str, str] = {}  # lowercase hostname -> machine id, from the evidence
        self._watermark: datetime | None = None
        self._synced: float | None = None
        self._flights: SingleFlight[None] = SingleFlight()

    @property
    def alert_count(self) -> int:
        with self._lock:
            return len(self._alerts)

    def close(self) -> None:
        self._client.close()

    # AlertSource ----------------------------------------------------------------------------

    def get_device_alerts(self, machine_id: str, *, priority: Priority = Priority.INTERACTIVE) -> list[Alert]:
        self.sync(priority)
        with self._lock:
            return [self._alerts[alert_id] for alert_id in self._by_device.get(machine_id.lower(), ())]

    def get_machine(self, id_or_name: str, *, priority: Priority = Priority.INTERACTIVE) -> Machine:
        ref = parse_device_ref(id_or_name)
        with self._lock:
            machine_id = ref.value if ref.kind is RefKind.MACHINE_ID else self._names.get(ref.value.lower())
            known = self._devices.get(machine_id) if machine_id else None
        if known is not None:
            return known
        if ref.kind is RefKind.MACHINE_ID:
            return self._client.get_device(ref.value, priority=priority)
        found = self._client.find_devices(ref.value, priority=priority)
        if not found:
            raise DeviceNotFound(ref.value)
        return found[0]  # the most recently seen record of that name

    def find_machines(
        self, hostname: str, *, prefix: bool = False, priority: Priority = Priority.INTERACTIVE
    ) -> list[Machine]:
        found = {m.id: m for m in self._client.find_devices(hostname, prefix=prefix, priority=priority)}
        wanted = hostname.lower()
        with self._lock:
            for name, machine_id in self._names.items():
                if (name.startswith(wanted) if prefix else name == wanted) and machine_id not in found:
                    found[machine_id] = self._devices[machine_id]
        return list(found.values())

    def list_alerts_updated_since(
        self, since: datetime, *, top: int = 10_000, priority: Priority = Priority.BACKGROUND
    ) -> list[Alert]:
        """The watch poller's delta: one Graph call per poll (lookups in between share it), answered from the mirror."""
        self.sync(priority, max_age=0.0)
        with self._lock:
            return [alert for alert in self._alerts.values() if _updated(alert) >= since]

    # The mirror -----------------------------------------------------------------------------

    def sync(self, priority: Priority = Priority.INTERACTIVE, *, max_age: float | None = None) -> None:
        """Bring the mirror up to date unless it was synced within `max_age` seconds (one sync at a time)."""
        limit = self._max_age if max_age is None else max_age
        with self._lock:
            synced = self._synced
        if synced is not None and self._clock() - synced < limit:
            return
        self._flights.run("sync", lambda: self._sync(priority))

    def _sync(self, priority: Priority) -> None:
        with self._lock:
            watermark = self._watermark
        since = self._now() - self._backfill if watermark is None else watermark - OVERLAP
        created_before: datetime | None = None
        for _ in range(MAX_CONTINUATIONS):
            read = self._client.alerts_updated_since(since, created_before=created_before, priority=priority)
            self._merge(read)
            if read.complete or not read.alerts:
                break
            created_before = min(alert.created or _EPOCH for alert in read.alerts)
        else:
            log.warning(
                "Graph alert mirror: more than %d reads since %s; the oldest are left out", MAX_CONTINUATIONS, since
            )
        with self._lock:
            self._synced = self._clock()

    def _merge(self, read: GraphAlerts) -> None:
        now = self._now()
        with self._lock:
            for alert in read.alerts:
                known = self._alerts.get(alert.id)
                if known is not None and _updated(known) > _updated(alert):
                    continue  # an older copy read again through the overlap
                self._alerts[alert.id] = alert
                for machine_id in alert.machine_ids:
                    self._by_device.setdefault(machine_id.lower(), set()).add(alert.id)
                newest = _updated(alert)
                if self._watermark is None or newest > self._watermark:
                    self._watermark = newest
            for machine_id, machine in read.devices.items():
                self._devices[machine_id.lower()] = machine
                if machine.computer_dns_name:
                    self._names[machine.computer_dns_name.lower()] = machine_id.lower()
            if self._watermark is not None and self._watermark > now + SKEW_WARNING:
                log.warning("Graph reports alerts updated %s ahead of this host's clock", self._watermark - now)
            self._evict()

    def _evict(self) -> None:
        """Keep at most `max_alerts`, dropping the least recently updated (called under the lock)."""
        excess = len(self._alerts) - self._max_alerts
        if excess <= 0:
            return
        for alert in sorted(self._alerts.values(), key=_updated)[:excess]:
            del self._alerts[alert.id]
            for machine_id in alert.machine_ids:
                self._by_device.get(machine_id.lower(), set()).discard(alert.id)
        log.warning(
            "Graph alert mirror is full (%d alerts): dropped the %d least recently updated", self._max_alerts, excess
        )
