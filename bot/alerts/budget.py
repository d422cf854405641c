"""The Defender call budget: sliding windows per API, with a reserve for people over background work.

Defender allows 100 calls per minute and 1,500 per hour per app + tenant, counted separately per API.
Every call (first attempts, retries and extra pages alike) asks `acquire` first; a call that would
break a window is never made. Background work (watch polling) may only use a share of each window so
that responders in an incident are never starved by it.

The windows are logs of call times rather than fixed buckets: a fixed bucket lets 2x the limit through
around a bucket edge, which is exactly what gets a tenant throttled. The `limits` package has the same
moving-window strategy, but reads the wall clock itself (no injectable clock, so an hour cannot be
simulated in a test) and has no notion of one window shared by two priorities.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

MINUTE = 60.0
HOUR = 3600.0


class Api(enum.Enum):
    """Defender APIs with their own rate-limit counters."""

    MACHINE_ALERTS = "machine-alerts"  # GET /api/machines/{id}/alerts
    MACHINE = "machine"  # GET /api/machines/{id}
    MACHINES = "machines"  # GET /api/machines
    ALERTS = "alerts"  # GET /api/alerts


class Priority(enum.Enum):
    INTERACTIVE = "interactive"
    BACKGROUND = "background"


class BudgetExhausted(Exception):
    """A call was not made because it would exceed the rate budget."""

    def __init__(self, api: Api, retry_after: float) -> None:
        super().__init__(f"Defender call budget for {api.value} used up; next slot in {retry_after:.0f} s")
        self.api = api
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class WindowUsage:
    api: Api
    used_last_minute: int
    used_last_hour: int
    minute_limit: int
    hour_limit: int

    @property
    def minute_left(self) -> int:
        return max(0, self.minute_limit - self.used_last_minute)

    @property
    def hour_left(self) -> int:
        return max(0, self.hour_limit - self.used_last_hour)


class Budget(Protocol):
    """What the client (`acquire`, as its `CallGate`) and /healthz (`usage`) need: `RateBudget` or a shared one."""

    per_minute: int
    per_hour: int

    def acquire(self, api: Api, priority: Priority = ...) -> None: ...
    def usage(self, api: Api) -> WindowUsage: ...


@runtime_checkable
class SharedThrottle(Protocol):
    """A gate that also remembers Defender's 429 `Retry-After` for every process (the Redis budget).

    The client records each 429 here as well as in itself, and asks before each call; the in-process
    `RateBudget` is not one, so a single process keeps the client's own memory only.
    """

    def block(self, api: Api, seconds: float) -> None: ...
    def blocked_for(self, api: Api) -> float: ...


class _Window:
    """Times of the calls made within the last `length` seconds."""

    def __init__(self, length: float) -> None:
        self.length = length
        self.calls: deque[float] = deque()

    def count(self, now: float) -> int:
        while self.calls and self.calls[0] <= now - self.length:
            self.calls.popleft()
        return len(self.calls)

    def wait_until_below(self, cap: int, now: float) -> float:
        """Seconds until fewer than `cap` calls remain in the window (0 when already below)."""
        excess = self.count(now) - cap
        if excess < 0:
            return 0.0
        return max(0.0, self.calls[excess] + self.length - now)


class RateBudget:
    """Thread-safe per-API minute and hour windows with an interactive reserve."""

    def __init__(
        self,
        per_minute: int = 100,
        per_hour: int = 1500,
        *,
        background_minute_share: float = 0.5,
        background_hour_share: float = 0.8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute < 1 or per_hour < 1:
            raise ValueError("budget limits must be at least 1")
        if not (0.0 <= background_minute_share <= 1.0 and 0.0 <= background_hour_share <= 1.0):
            raise ValueError("background shares must be between 0 and 1")
        self.per_minute = per_minute
        self.per_hour = per_hour
        self._caps = {
            Priority.INTERACTIVE: (per_minute, per_hour),
            Priority.BACKGROUND: (int(per_minute * background_minute_share), int(per_hour * background_hour_share)),
        }
        self._clock = clock
        self._lock = threading.Lock()
        self._windows = {api: (_Window(MINUTE), _Window(HOUR)) for api in Api}

    def acquire(self, api: Api, priority: Priority = Priority.INTERACTIVE) -> None:
        """Record one call to `api`, or raise `BudgetExhausted` with the wait if it does not fit."""
        minute_cap, hour_cap = self._caps[priority]
        minute, hour = self._windows[api]
        if minute_cap == 0 or hour_cap == 0:
            raise BudgetExhausted(api, MINUTE)  # this priority has no share at all
        with self._lock:
            now = self._clock()
            wait = max(minute.wait_until_below(minute_cap, now), hour.wait_until_below(hour_cap, now))
            if wait > 0:
                raise BudgetExhausted(api, wait)
            minute.calls.append(now)
            hour.calls.append(now)

    def usage(self, api: Api) -> WindowUsage:
        minute, hour = self._windows[api]
        with self._lock:
            now = self._clock()
            return WindowUsage(api, minute.count(now), hour.count(now), self.per_minute, self.per_hour)
