"""The alert service: device reference in, `DeviceAlerts` out, with as few Defender calls as possible.

A lookup may carry a `DeviceScope` (the device groups the person may see): a device outside it is
answered exactly like an unknown one, and "did you mean" suggestions are left out, so a scoped lookup
reveals nothing about devices it may not see (`bot.alerts.devices`).

Three mechanisms keep an incident channel from burning the tenant's rate limit:
- a TTL cache of each device's full alert list (filters are applied to the cached list, so one call
  serves every filter variant), kept a while past its freshness to serve as stale-if-error data; as the
  hour's budget runs low the TTL stretches (`bot.alerts.freshness`), so the budget lasts the hour;
- single flight, so concurrent requests for one device share one call;
- the rate budget, consulted by the client before every request.

A first lookup by machine id asks for the device's details and its alerts at the same time: one round trip.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import cachetools

from bot.alerts.devices import Devices
from bot.alerts.freshness import Pacing
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
    Throttled,
)
from bot.defender.limits import BudgetExhausted, Priority
from bot.defender.models import Alert
from bot.defender.refs import DeviceRef, parse_device_ref
from bot.state.cache import NothingShared, SharedCache

log = logging.getLogger(__name__)

# Failures after which older data is better than no data, and how a user is told why it is old.
_STALE_REASONS: dict[type[Exception], str] = {
    Throttled: "Defender throttled",
    BudgetExhausted: "call budget used up",
    DefenderUnavailable: "Defender unavailable",
    BadResponse: "Defender sent a bad response",
    AuthError: "Defender sign-in failed",
}
# Threads asking for alerts while the lookup's own thread asks for the device's details.
ALERT_FETCHERS = 16


def _newer(one: Alert, other: Alert) -> bool:
    """Whether `one` is a later version of the alert than `other` (by lastUpdateTime)."""
    return one.last_update is not None and other.last_update is not None and one.last_update > other.last_update


@dataclass(frozen=True, slots=True)
class _Snapshot:
    alerts: tuple[Alert, ...]
    fetched_at: datetime  # wall clock, for people
    fetched_mono: float  # service clock, for ages


_Fetched = tuple[_Snapshot, bool, str | None]  # (list, from cache, why stale)


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
        budget_share_left: Callable[[Priority], float] | None = None,
    ) -> None:
        """`budget_share_left(priority)`: the share of the hour's alert-call budget still free (see `Pacing`)."""
        self._client = client
        # Several processes (BOT_STATE_URL=redis://…): read and write through a shared cache, one call cluster-wide.
        self._shared: SharedCache = shared or NothingShared()
        self._pacing = Pacing(ttl, budget_share_left)
        self._max_stale = max_stale
        self._min_refresh = min_refresh_interval
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        # Entries live while they may still be shown: fresh for `ttl` (longer when paced), stale-if-error after that.
        keep = max(ttl, max_stale, self._pacing.longest)
        self._alerts: cachetools.TTLCache[str, _Snapshot] = cachetools.TTLCache(maxsize, keep, clock)
        self._devices = Devices(client, self._shared, maxsize=maxsize, clock=clock)
        self._alert_flights: SingleFlight[tuple[_Snapshot, bool]] = SingleFlight()
        self._fetchers = ThreadPoolExecutor(ALERT_FETCHERS, thread_name_prefix="alert-fetch")

    def close(self) -> None:
        self._fetchers.shutdown(wait=False, cancel_futures=True)

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
        alerts = self._alerts_beside_details(device, priority, refresh)
        unknown: DeviceNotFound | None = None
        try:
            machine_id, machine = self._devices.resolve_in_scope(device, priority, scope)
        except DeviceNotFound as exc:
            if not (device.is_machine_id and scope.everything):
                _settle(alerts)  # an unknown device and one outside the scope take the same calls and time
                raise
            # The source has no details of this id; its alerts decide (a source may know a device by its
            # alerts only: Graph's advanced hunting sees the last 30 days, its alert mirror longer).
            machine_id, machine, unknown = device.value, None, exc
        except Exception:
            _settle(alerts)  # a failed scope check: the fetch beside it ends before the lookup does
            raise
        # Only now, with the device in scope, are its alerts looked at.
        snapshot, from_cache, stale_reason = (
            alerts.result() if alerts is not None else self._snapshot(machine_id, priority, refresh)
        )
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

    def replace_alert(self, machine_id: str, written: Alert) -> bool:
        """Put an alert just written (a triage change) into the device's cached list, keeping the list's age.

        The rest of the list is no fresher for the write, so it ages (and is refreshed) as before; a redrawn card
        shows the write at no cost. Returns whether a cached list took it.
        """
        self._latest(machine_id)  # another process's newer list, if there is one, becomes the base
        with self._lock:
            cached = self._alerts.get(machine_id)
            if cached is None:
                return False
            # A version cached after the write (a lookup's, or another process's) is kept.
            alerts = {alert.id: alert for alert in cached.alerts}
            known = alerts.get(written.id)
            if known is None or not _newer(known, written):
                alerts[written.id] = written
            snapshot = _Snapshot(tuple(alerts.values()), cached.fetched_at, cached.fetched_mono)
            self._alerts[machine_id] = snapshot
        self._shared.put_alerts(machine_id, snapshot.alerts, snapshot.fetched_at)
        return True

    # Alerts ---------------------------------------------------------------------------------

    def _alerts_beside_details(self, device: DeviceRef, priority: Priority, refresh: bool) -> Future[_Fetched] | None:
        """A machine id whose details take a call: its alerts are asked for at the same time, on another thread.

        Every other reference resolves first (a hostname's id is needed; known details cost nothing).
        """
        if not device.is_machine_id or self._devices.details_known(device.value):
            return None
        context = contextvars.copy_context()  # the lookup's request count and log context go along
        return self._fetchers.submit(context.run, self._snapshot, device.value, priority, refresh)

    def _snapshot(self, machine_id: str, priority: Priority, refresh: bool) -> _Fetched:
        fresh_for = self._min_refresh if refresh else self._pacing.ttl
        cached = self._latest(machine_id, fresh_for)
        if not refresh and (cached is None or self._clock() - cached.fetched_mono >= fresh_for):
            # Pacing only ever lengthens the TTL, and reading the budget is a Redis call with several processes:
            # a copy within the plain TTL is fresh without asking.
            fresh_for = self._pacing.fresh_for(priority)
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
            if reason is None or stale is None or not self._may_serve_stale(stale, exc):
                raise
            log.info("serving stale alerts for %s: %s", machine_id, reason)
            return stale, True, reason
        return snapshot, shared or borrowed, None

    def _may_serve_stale(self, stale: _Snapshot, failure: DefenderError) -> bool:
        """Any kept copy beats a budget notice (pacing keeps them for the hour); other failures serve `max_stale`."""
        return isinstance(failure, BudgetExhausted) or self._clock() - stale.fetched_mono <= self._max_stale

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
        local = self._cached(machine_id)
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

    def device_group(self, machine_id: str, priority: Priority = Priority.BACKGROUND) -> str | None:
        """The device's group (`rbacGroupName`), from the hour-long details cache when there.

        Raises like a lookup when the details cannot be read: a scope check must not guess.
        """
        return self._devices.group(machine_id, priority)

    def _cached(self, machine_id: str) -> _Snapshot | None:
        with self._lock:
            return self._alerts.get(machine_id)


def _settle(pending: Future[_Fetched] | None) -> None:
    """Wait for an alert fetch whose answer is not wanted (its outcome, failure included, is dropped)."""
    if pending is not None:
        pending.exception()
