"""The alert service: device reference in, `DeviceAlerts` out, with as few Defender calls as possible.

Three mechanisms keep an incident channel from burning the tenant's rate limit:
- a TTL cache of each device's full alert list (filters are applied to the cached list, so one call
  serves every filter variant), kept a while past its freshness to serve as stale-if-error data;
- single flight, so concurrent requests for one device share one call;
- the rate budget, consulted by the client before every request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import cachetools

from bot.alerts.budget import BudgetExhausted, Priority
from bot.alerts.query import AlertFilters
from bot.alerts.result import DeviceAlerts, display_order
from bot.alerts.singleflight import SingleFlight
from bot.defender.client import DefenderClient
from bot.defender.errors import (
    AuthError,
    BadResponse,
    DefenderError,
    DefenderUnavailable,
    DeviceNotFound,
    PermissionDenied,
    Throttled,
)
from bot.defender.models import Alert, Machine
from bot.defender.refs import DeviceRef, parse_device_ref

log = logging.getLogger(__name__)

_K = TypeVar("_K")
_V = TypeVar("_V")

NAME_TTL = 3600.0  # hostname -> id mappings and machine details change rarely
MAX_SUGGESTIONS = 5

# Failures after which older data is better than no data, and how a user is told why it is old.
_STALE_REASONS: dict[type[Exception], str] = {
    Throttled: "Defender throttled",
    BudgetExhausted: "call budget used up",
    DefenderUnavailable: "Defender unavailable",
    BadResponse: "Defender sent a bad response",
    AuthError: "Defender sign-in failed",
}


def _newer(one: Alert, other: Alert) -> bool:
    """Whether `one` is a later version of the alert than `other` (by lastUpdateTime)."""
    return one.last_update is not None and other.last_update is not None and one.last_update > other.last_update


@dataclass(frozen=True, slots=True)
class _Snapshot:
    alerts: tuple[Alert, ...]
    fetched_at: datetime  # wall clock, for people
    fetched_mono: float  # service clock, for ages


class AlertService:
    """Thread-safe; one instance per process holds the caches and shares the client and budget."""

    def __init__(
        self,
        client: DefenderClient,
        *,
        ttl: float = 60.0,
        max_stale: float = 900.0,
        maxsize: int = 2048,
        min_refresh_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._min_refresh = min_refresh_interval
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        # Entries live for `max_stale`; they are fresh for `ttl` and serve as stale-if-error after that.
        self._alerts: cachetools.TTLCache[str, _Snapshot] = cachetools.TTLCache(maxsize, max(ttl, max_stale), clock)
        self._machines: cachetools.TTLCache[str, Machine | None] = cachetools.TTLCache(maxsize, NAME_TTL, clock)
        self._names: cachetools.TTLCache[str, str] = cachetools.TTLCache(maxsize, NAME_TTL, clock)
        self._alert_flights: SingleFlight[_Snapshot] = SingleFlight()
        self._name_flights: SingleFlight[Machine] = SingleFlight()
        self._detail_flights: SingleFlight[Machine | None] = SingleFlight()

    @property
    def cached_devices(self) -> int:
        with self._lock:
            return len(self._alerts)

    def device_alerts(
        self,
        ref: str | DeviceRef,
        filters: AlertFilters | None = None,
        *,
        priority: Priority = Priority.INTERACTIVE,
        refresh: bool = False,
    ) -> DeviceAlerts:
        """One device's alerts, filtered and ordered, from cache when fresh.

        `refresh` skips a fresh cache entry (still single-flighted and budgeted; an entry younger than
        `min_refresh_interval` is reused so that a button mashed by ten people costs one call).
        Raises `DefenderError` subclasses or `BudgetExhausted` when no data, not even stale, exists.
        """
        device = ref if isinstance(ref, DeviceRef) else parse_device_ref(ref)
        machine_id, machine = self._resolve(device, priority)
        snapshot, from_cache, stale_reason = self._snapshot(machine_id, priority, refresh)
        now = self._now()
        filters = filters or AlertFilters()
        return DeviceAlerts(
            machine_id=machine_id,
            machine=machine,
            alerts=display_order(a for a in snapshot.alerts if filters.matches(a, now)),
            total=len(snapshot.alerts),
            filters=filters,
            fetched_at=snapshot.fetched_at,
            age=timedelta(seconds=max(0.0, self._clock() - snapshot.fetched_mono)),
            from_cache=from_cache,
            stale_reason=stale_reason,
        )

    def merge_updates(self, machine_id: str, updated: list[Alert], *, covered_since: datetime) -> bool:
        """Fold alerts updated since `covered_since` into the device's cached list (the watch poller's delta).

        Only when the cached list is at least that recent do the updates complete it; then it becomes as
        fresh as now and a lookup right after a poll costs no Defender call. Returns whether it merged.
        """
        with self._lock:
            cached = self._alerts.get(machine_id)
            if cached is None or cached.fetched_at < covered_since:
                return False
            merged = {alert.id: alert for alert in cached.alerts}
            for alert in updated:
                known = merged.get(alert.id)
                # A lookup that ran while the poll was in flight may have cached a newer version: keep it.
                if known is None or not _newer(known, alert):
                    merged[alert.id] = alert
            self._alerts[machine_id] = _Snapshot(tuple(merged.values()), self._now(), self._clock())
            return True

    # Alerts ---------------------------------------------------------------------------------

    def _snapshot(self, machine_id: str, priority: Priority, refresh: bool) -> tuple[_Snapshot, bool, str | None]:
        cached = self._cached(self._alerts, machine_id)
        if cached is not None:
            age = self._clock() - cached.fetched_mono
            if age < (self._min_refresh if refresh else self._ttl):
                return cached, True, None
        try:
            snapshot, shared = self._alert_flights.run(machine_id, lambda: self._fetch(machine_id, priority))
        except (DefenderError, BudgetExhausted) as exc:
            reason = _STALE_REASONS.get(type(exc))
            stale = self._cached(self._alerts, machine_id)
            if reason is None or stale is None:
                raise
            log.info("serving stale alerts for %s: %s", machine_id, reason)
            return stale, True, reason
        return snapshot, shared, None

    def _fetch(self, machine_id: str, priority: Priority) -> _Snapshot:
        alerts = self._client.get_device_alerts(machine_id, priority=priority)
        snapshot = _Snapshot(tuple(alerts), self._now(), self._clock())
        with self._lock:
            self._alerts[machine_id] = snapshot
        return snapshot

    # Devices --------------------------------------------------------------------------------

    def _resolve(self, device: DeviceRef, priority: Priority) -> tuple[str, Machine | None]:
        """Machine id and (when known) details for a reference; hostnames cost a lookup once an hour."""
        if device.is_machine_id:
            return device.value, self._machine_details(device.value, priority)
        machine_id = self._cached(self._names, device.value)
        if machine_id is None:
            found = self._name_flights.run(device.value, lambda: self._lookup_name(device.value, priority))[0]
            return found.id, found
        return machine_id, self._cached(self._machines, machine_id)

    def _machine_details(self, machine_id: str, priority: Priority) -> Machine | None:
        """Best effort: the card is still useful without OS and health, so failures only log."""
        with self._lock:
            if machine_id in self._machines:
                return self._machines[machine_id]

        def fetch() -> Machine | None:
            try:
                machine = self._client.get_machine(machine_id, priority=priority)
            except PermissionDenied:
                # Without Machine.Read.All this will not change soon: do not ask on every lookup.
                log.warning("no permission to read machine details (grant Machine.Read.All)")
                with self._lock:
                    self._machines[machine_id] = None
                return None
            except (DefenderError, BudgetExhausted) as exc:
                log.info("no details for machine %s: %s", machine_id, type(exc).__name__)
                return None
            self._remember(machine)
            return machine

        return self._detail_flights.run(machine_id, fetch)[0]

    def _lookup_name(self, hostname: str, priority: Priority) -> Machine:
        try:
            machine = self._client.get_machine(hostname, priority=priority)
        except DeviceNotFound:
            machine = self._match_prefix(hostname, priority)
        self._remember(machine, hostname)
        return machine

    def _match_prefix(self, hostname: str, priority: Priority) -> Machine:
        """`ws-fin-014` finds `ws-fin-014.contoso.local`; several different names become suggestions."""
        candidates = self._client.find_machines(hostname, prefix=True, priority=priority)
        exact = [m for m in candidates if (m.computer_dns_name or "").lower() == hostname]
        names = {(m.computer_dns_name or "").lower() for m in candidates}
        chosen = exact or (candidates if len(names) == 1 else [])
        if not chosen:
            suggestions = tuple(sorted(n for n in names if n)[:MAX_SUGGESTIONS])
            raise DeviceNotFound(hostname, suggestions=suggestions)
        # Re-onboarded devices leave several records under one name: the newest one is the live one.
        return max(chosen, key=lambda m: (m.last_seen or datetime.min.replace(tzinfo=UTC), m.id))

    def _remember(self, machine: Machine, *names: str) -> None:
        with self._lock:
            self._machines[machine.id] = machine
            for name in {*names, (machine.computer_dns_name or "").lower()} - {""}:
                self._names[name] = machine.id

    def _cached(self, cache: cachetools.TTLCache[_K, _V], key: _K) -> _V | None:
        with self._lock:
            return cache.get(key)
