"""The in-process rate budget: per-API minute and hour windows kept as logs of call times.

The windows are logs of call times rather than fixed buckets: a fixed bucket lets 2x the limit through
around a bucket edge, which is exactly what gets a tenant throttled. The `limits` package has the same
moving-window strategy, but reads the wall clock itself (no injectable clock, so an hour cannot be
simulated in a test) and has no notion of one window shared by two priorities.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

from bot.defender.limits import (
    HOUR,
    MINUTE,
    Api,
    ApiLimits,
    BudgetCaps,
    BudgetExhausted,
    Priority,
    WindowUsage,
    hour_share_left,
)


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
    """Thread-safe per-API minute and hour windows with an interactive reserve.

    Each API has its own limits (`BudgetCaps.limits`): `per_minute` / `per_hour` for the Defender for Endpoint
    APIs, `DEFAULT_API_LIMITS` and `per_api` for those with limits of their own (the Graph APIs).
    """

    def __init__(
        self,
        per_minute: int = 100,
        per_hour: int = 1500,
        *,
        background_minute_share: float = 0.5,
        background_hour_share: float = 0.8,
        per_api: Mapping[Api, ApiLimits] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # `per_minute` / `per_hour` hold for the APIs without limits of their own; `per_api` overrides single APIs
        # on top of the defaults (`DEFAULT_API_LIMITS`, the Graph APIs').
        self.limits = BudgetCaps(per_minute, per_hour, background_minute_share, background_hour_share, per_api or {})
        self.per_minute = per_minute
        self.per_hour = per_hour
        self._clock = clock
        self._lock = threading.Lock()
        self._windows = {api: (_Window(MINUTE), _Window(HOUR)) for api in Api}

    @classmethod
    def from_caps(cls, caps: BudgetCaps, *, clock: Callable[[], float] = time.monotonic) -> RateBudget:
        """A budget with every limit of `caps`, the per-API ones included."""
        return cls(
            caps.per_minute,
            caps.per_hour,
            background_minute_share=caps.background_minute_share,
            background_hour_share=caps.background_hour_share,
            per_api=caps.per_api,
            clock=clock,
        )

    def acquire(self, api: Api, priority: Priority = Priority.INTERACTIVE) -> None:
        """Record one call to `api`, or raise `BudgetExhausted` with the wait if it does not fit."""
        minute_cap, hour_cap = self.limits.caps(priority, api)
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
            used_minute, used_hour = minute.count(now), hour.count(now)
        limits = self.limits.limits(api)
        return WindowUsage(api, used_minute, used_hour, limits.per_minute, limits.per_hour)

    def assume_spent(self, api: Api, minute_calls: int, hour_calls: int, at: float) -> None:
        """Count calls made elsewhere, as of `at` (this budget's clock): a process falling back to its share of a
        window other processes had already spent in part. They leave the windows no earlier than the real ones."""
        minute, hour = self._windows[api]
        with self._lock:
            minute.calls.extend([at] * minute_calls)
            hour.calls.extend([at] * hour_calls)
            minute.calls = deque(sorted(minute.calls))
            hour.calls = deque(sorted(hour.calls))

    def hour_share_left(self, api: Api, priority: Priority = Priority.INTERACTIVE) -> float:
        """The share of the hour's cap for `priority` still free: the alert cache stretches its TTL as it shrinks."""
        return hour_share_left(self.limits, self.usage(api), priority)
