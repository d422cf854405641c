"""The alert service: device reference in, `DeviceAlerts` out, with as few Defender calls as possible.

A lookup may carry a `DeviceScope` (the device groups the person may see): a device outside it is
answered exactly like an unknown one, and "did you mean" suggestions are left out, so a scoped lookup
reveals nothing about devices it may not see.

Three mechanisms keep an incident channel from burning the tenant's rate limit:
- a TTL cache of each device's full alert list (filters are applied to the cached list, so one call
  serves every filter variant), kept a while past its freshness to serve as stale-if-error data;
- single flight, so concurrent requests for one device share one call;
- the rate budget, consulted by the client before every request.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import cachetools

from bot.alerts.misses import Misses
from bot.alerts.query import AlertFilters
from bot.alerts.result import DeviceAlerts, display_order
from bot.alerts.scope import EVERY_DEVICE, DeviceScope
from bot.alerts.singleflight import SingleFlight
from bot.alerts.source import AlertSource
from bot.defender.errors import (
    AuthError,
    BadResponse,
    DefenderError,
    DefenderUnavailable,
    DeviceNotFound,
    PermissionDenied,
    Throttled,
)
from bot.defender.limits import BudgetExhausted, Priority
from bot.defender.models import Alert, Machine
from bot.defender.refs import DeviceRef, parse_device_ref
from bot.state.cache import NothingShared, SharedCache

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
        client: AlertSource,
        *,
        ttl: float = 60.0,
        max_stale: float = 900.0,
        maxsize: int = 2048,
        min_refresh_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        shared: SharedCache | None = None,
    ) -> None:
        self._client = client
        # Several processes (BOT_STATE_URL=redis://…): read and write through a shared cache, one call cluster-wide.
        self._shared: SharedCache = shared or NothingShared()
        self._ttl = ttl
        self._min_refresh = min_refresh_interval
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        # Entries live for `max_stale`; they are fresh for `ttl` and serve as stale-if-error after that.
        self._alerts: cachetools.TTLCache[str, _Snapshot] = cachetools.TTLCache(maxsize, max(ttl, max_stale), clock)
        self._machines: cachetools.TTLCache[str, Machine | None] = cachetools.TTLCache(maxsize, NAME_TTL, clock)
        self._names: cachetools.TTLCache[str, str] = cachetools.TTLCache(maxsize, NAME_TTL, clock)
        self._misses = Misses(clock, maxsize=maxsize)  # unknown names and ids, for ten minutes
        self._alert_flights: SingleFlight[tuple[_Snapshot, bool]] = SingleFlight()
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
        scope: DeviceScope = EVERY_DEVICE,
    ) -> DeviceAlerts:
        """One device's alerts, filtered and ordered, from cache when fresh.

        `refresh` skips a fresh cache entry (still single-flighted and budgeted; an entry younger than
        `min_refresh_interval` is reused so that a button mashed by ten people costs one call).
        Raises a `DefenderError` (`BudgetExhausted` among them) when no data, not even stale, exists;
        `DeviceNotFound` (without suggestions) for a device outside `scope`.
        """
        device = ref if isinstance(ref, DeviceRef) else parse_device_ref(ref)
        unknown: DeviceNotFound | None = None
        try:
            machine_id, machine = self._resolve_in_scope(device, priority, scope)
        except DeviceNotFound as exc:
            if not (device.is_machine_id and scope.everything):
                raise
            # The source has no details of this id; its alerts decide (a source may know a device by its
            # alerts only: Graph's advanced hunting sees the last 30 days, its alert mirror longer).
            machine_id, machine, unknown = device.value, None, exc
        snapshot, from_cache, stale_reason = self._snapshot(machine_id, priority, refresh)
        if unknown is not None and not snapshot.alerts:
            raise unknown
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
        self._latest(machine_id)  # another process's newer list, if there is one, becomes the base
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
            snapshot = self._alerts[machine_id] = _Snapshot(tuple(merged.values()), self._now(), self._clock())
        self._shared.put_alerts(machine_id, snapshot.alerts, snapshot.fetched_at)
        return True

    # Alerts ---------------------------------------------------------------------------------

    def _snapshot(self, machine_id: str, priority: Priority, refresh: bool) -> tuple[_Snapshot, bool, str | None]:
        fresh_for = self._min_refresh if refresh else self._ttl
        cached = self._latest(machine_id, fresh_for)
        if cached is not None:
            age = self._clock() - cached.fetched_mono
            if age < fresh_for:
                return cached, True, None
        try:
            (snapshot, borrowed), shared = self._alert_flights.run(
                machine_id, lambda: self._fetch_once(machine_id, priority, fresh_for)
            )
        except DefenderError as exc:
            reason = _STALE_REASONS.get(type(exc))
            stale = self._latest(machine_id)
            if reason is None or stale is None:
                raise
            log.info("serving stale alerts for %s: %s", machine_id, reason)
            return stale, True, reason
        return snapshot, shared or borrowed, None

    def _fetch_once(self, machine_id: str, priority: Priority, fresh_for: float) -> tuple[_Snapshot, bool]:
        """One call for the device in the whole cluster; True when another process's call answered."""

        def landed() -> _Snapshot | None:
            found = self._latest(machine_id, fresh_for)
            return found if found is not None and self._clock() - found.fetched_mono < fresh_for else None

        return self._shared.single_flight(f"alerts:{machine_id}", lambda: self._fetch(machine_id, priority), landed)

    def _fetch(self, machine_id: str, priority: Priority) -> _Snapshot:
        alerts = self._client.get_device_alerts(machine_id, priority=priority)
        snapshot = _Snapshot(tuple(alerts), self._now(), self._clock())
        with self._lock:
            self._alerts[machine_id] = snapshot
        self._shared.put_alerts(machine_id, snapshot.alerts, snapshot.fetched_at)
        return snapshot

    def _latest(self, machine_id: str, fresh_for: float = 0.0) -> _Snapshot | None:
        """This process's alert list, or the shared one when that is newer and this one not fresh enough."""
        local = self._cached(self._alerts, machine_id)
        if local is not None and self._clock() - local.fetched_mono < fresh_for:
            return local
        found = self._shared.get_alerts(machine_id)
        if found is None:
            return local
        alerts, fetched_at = found
        age = max(0.0, (self._now() - fetched_at).total_seconds())
        if (local is not None and local.fetched_at >= fetched_at) or age >= self._alerts.ttl:
            return local
        snapshot = _Snapshot(alerts, fetched_at, self._clock() - age)
        with self._lock:
            self._alerts[machine_id] = snapshot
        return snapshot

    # Devices --------------------------------------------------------------------------------

    def device_group(self, machine_id: str, priority: Priority = Priority.BACKGROUND) -> str | None:
        """The device's group (`rbacGroupName`), from the hour-long details cache when there.

        Raises like a lookup when the details cannot be read: a scope check must not guess.
        """
        machine = self._machine_details(machine_id, priority, strict=True)
        return machine.rbac_group_name if machine is not None else None

    def _resolve_in_scope(
        self, device: DeviceRef, priority: Priority, scope: DeviceScope
    ) -> tuple[str, Machine | None]:
        if scope.everything:
            return self._resolve(device, priority)
        name = None if device.is_machine_id else self._cached(self._names, device.value)
        named = device.is_machine_id or (name or self._shared_name(device.value)) is not None
        try:
            machine_id, machine = self._resolve(device, priority, strict=True)
        except DeviceNotFound:
            raise DeviceNotFound(device.value) from None  # suggestions could name devices outside the scope
        if machine is None or not scope.allows(machine.rbac_group_name):
            if not named:
                self._as_costly_as_a_miss(device.value, machine, priority)
            raise DeviceNotFound(device.value)
        return machine_id, machine

    def _as_costly_as_a_miss(self, hostname: str, machine: Machine | None, priority: Priority) -> None:
        """A hostname outside the scope, just found by its exact name (one call), costs the prefix search an
        unknown name costs too: the same calls and time either way, so neither tells that the device exists.
        (Repeats cost nothing either way: names are cached, and so are misses.)"""
        if machine is not None and (machine.computer_dns_name or "").lower() == hostname:
            with contextlib.suppress(DefenderError):
                self._client.find_machines(hostname, prefix=True, priority=priority)

    def _resolve(self, device: DeviceRef, priority: Priority, *, strict: bool = False) -> tuple[str, Machine | None]:
        """Machine id and (when known) details for a reference; hostnames cost a lookup once an hour."""
        if device.is_machine_id:
            return device.value, self._machine_details(device.value, priority, strict=strict)
        machine_id = self._cached(self._names, device.value) or self._shared_name(device.value)
        if machine_id is None:
            self._misses.check(device.value)  # a name Defender did not know ten minutes ago costs no call
            found = self._name_flights.run(device.value, lambda: self._lookup_name_once(device.value, priority))[0]
            return found.id, found
        machine = self._cached(self._machines, machine_id)
        if machine is None and strict:
            machine = self._machine_details(machine_id, priority, strict=True)
        return machine_id, machine

    def _machine_details(self, machine_id: str, priority: Priority, *, strict: bool = False) -> Machine | None:
        """Best effort unless `strict`: a card is still useful without OS and health, so failures only log
        (`DeviceNotFound` is an answer: raised either way).

        A scope check is strict: it raises the failure, and `PermissionDenied` when details cannot be read.
        """
        with self._lock:
            known = machine_id in self._machines
            cached = self._machines.get(machine_id)
        if not known:
            known, cached = self._shared_machine(machine_id)
        if not known:
            self._misses.check(machine_id)
            try:
                cached = self._detail_flights.run(machine_id, lambda: self._fetch_details_once(machine_id, priority))[0]
            except DefenderError as exc:
                if strict or isinstance(exc, DeviceNotFound):  # "no such device" is an answer, not a failure
                    raise
                log.info("no details for machine %s: %s", machine_id, type(exc).__name__)
                return None
        if cached is None and strict:
            raise PermissionDenied("the app cannot read device details, so it cannot check device groups")
        return cached

    def _fetch_details(self, machine_id: str, priority: Priority) -> Machine | None:
        try:
            machine = self._client.get_machine(machine_id, priority=priority)
        except DeviceNotFound as miss:
            self._misses.remember(machine_id, miss)
            raise
        except PermissionDenied as exc:
            # Without the permission (Machine.Read.All; ThreatHunting.Read.All through Graph) this will not
            # change soon: do not ask on every lookup.
            log.warning("no permission to read machine details (grant %s)", exc.permission or "Machine.Read.All")
            with self._lock:
                self._machines[machine_id] = None
            self._shared.put_machine(machine_id, None)
            return None
        self._remember(machine)
        return machine

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
            miss = DeviceNotFound(hostname, suggestions=tuple(sorted(n for n in names if n)[:MAX_SUGGESTIONS]))
            self._misses.remember(hostname, miss)
            raise miss
        # Re-onboarded devices leave several records under one name: the newest one is the live one.
        return max(chosen, key=lambda m: (m.last_seen or datetime.min.replace(tzinfo=UTC), m.id))

    def _remember(self, machine: Machine, *names: str) -> None:
        known = {*names, (machine.computer_dns_name or "").lower()} - {""}
        with self._lock:
            self._machines[machine.id] = machine
            for name in known:
                self._names[name] = machine.id
        self._shared.put_machine(machine.id, machine)
        for name in known:
            self._shared.put_name(name, machine.id)

    # Shared with other processes (nothing, in a single process) -------------------------------

    def _shared_machine(self, machine_id: str) -> tuple[bool, Machine | None]:
        known, machine = self._shared.get_machine(machine_id)
        if known:
            with self._lock:
                self._machines[machine_id] = machine
        return known, machine

    def _shared_name(self, name: str) -> str | None:
        machine_id = self._shared.get_name(name)
        if machine_id is not None:
            self._shared_machine(machine_id)
            with self._lock:
                self._names[name] = machine_id
        return machine_id

    def _lookup_name_once(self, hostname: str, priority: Priority) -> Machine:
        def landed() -> Machine | None:
            machine_id = self._shared_name(hostname)
            return self._cached(self._machines, machine_id) if machine_id is not None else None

        return self._shared.single_flight(f"name:{hostname}", lambda: self._lookup_name(hostname, priority), landed)[0]

    def _fetch_details_once(self, machine_id: str, priority: Priority) -> Machine | None:
        def landed() -> tuple[Machine | None] | None:
            known, machine = self._shared_machine(machine_id)
            return (machine,) if known else None

        boxed, _ = self._shared.single_flight(
            f"machine:{machine_id}", lambda: (self._fetch_details(machine_id, priority),), landed
        )
        return boxed[0]

    def _cached(self, cache: cachetools.TTLCache[_K, _V], key: _K) -> _V | None:
        with self._lock:
            return cache.get(key)
