"""Devices: a hostname or machine id resolved to a machine id and its details, with as few calls as possible.

Hostname -> id mappings and details change rarely: both are cached for an hour (`NAME_TTL`), in this process
and in the shared cache; names and ids Defender did not know are remembered for ten minutes (`Misses`).
A lookup with a `DeviceScope` sees a device outside it exactly as an unknown one: same answer, same calls.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import cachetools

from bot.alerts.misses import Misses
from bot.alerts.scope import DeviceScope
from bot.alerts.singleflight import SingleFlight
from bot.alerts.source import AlertSource
from bot.defender.errors import DefenderError, DeviceNotFound, PermissionDenied
from bot.defender.limits import Priority
from bot.defender.models import Machine
from bot.defender.refs import DeviceRef
from bot.state.cache import SharedCache

log = logging.getLogger(__name__)

_K = TypeVar("_K")
_V = TypeVar("_V")

NAME_TTL = 3600.0  # hostname -> id mappings and machine details change rarely
MAX_SUGGESTIONS = 5


class Devices:
    """Thread-safe; the alert service's device half (names, details, scope checks)."""

    def __init__(self, client: AlertSource, shared: SharedCache, *, maxsize: int, clock: Callable[[], float]) -> None:
        self._client = client
        self._shared = shared
        self._lock = threading.Lock()
        self._machines: cachetools.TTLCache[str, Machine | None] = cachetools.TTLCache(maxsize, NAME_TTL, clock)
        self._names: cachetools.TTLCache[str, str] = cachetools.TTLCache(maxsize, NAME_TTL, clock)
        self._misses = Misses(clock, maxsize=maxsize)  # unknown names and ids, for ten minutes
        self._name_flights: SingleFlight[Machine] = SingleFlight()
        self._detail_flights: SingleFlight[Machine | None] = SingleFlight()

    def details_known(self, machine_id: str) -> bool:
        """Whether the device's details (or that it does not exist) are known without a call."""
        with self._lock:
            if machine_id in self._machines:
                return True
        try:
            self._misses.check(machine_id)
        except DeviceNotFound:
            return True
        return self._shared_machine(machine_id)[0]

    def group(self, machine_id: str, priority: Priority = Priority.BACKGROUND) -> str | None:
        """The device's group (`rbacGroupName`), from the hour-long details cache when there.

        Raises like a lookup when the details cannot be read: a scope check must not guess.
        """
        machine = self._machine_details(machine_id, priority, strict=True)
        return machine.rbac_group_name if machine is not None else None

    def resolve_in_scope(self, device: DeviceRef, priority: Priority, scope: DeviceScope) -> tuple[str, Machine | None]:
        if scope.everything:
            return self.resolve(device, priority)
        name = None if device.is_machine_id else self._cached(self._names, device.value)
        named = device.is_machine_id or (name or self._shared_name(device.value)) is not None
        try:
            machine_id, machine = self.resolve(device, priority, strict=True)
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

    def resolve(self, device: DeviceRef, priority: Priority, *, strict: bool = False) -> tuple[str, Machine | None]:
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
