"""Collapse concurrent identical calls into one: the first caller works, the others wait for its result.

When a channel full of responders asks about the same device at once, Defender sees one call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar, cast

_V = TypeVar("_V")


class _Flight(Generic[_V]):
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: _V | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[_V]):
    """Thread-safe; waiters receive the leader's value or re-raise the leader's exception."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight[_V]] = {}

    def run(self, key: Hashable, work: Callable[[], _V]) -> tuple[_V, bool]:
        """Run `work` once per key at a time; return (value, shared) where shared means 'waited for another'."""
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return cast(_V, flight.value), True
        try:
            flight.value = work()
            return flight.value, False
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    def in_flight(self) -> int:
        with self._lock:
            return len(self._flights)
