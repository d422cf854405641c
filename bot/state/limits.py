"""Per-person and per-channel request limits, so one user or a runaway workflow cannot spend the
tenant's Defender budget for everyone.

Token buckets: each key holds up to `per_minute` tokens and refills at `per_minute / 60` per second,
so a burst of a full minute's allowance is fine and a steady flood is cut to the rate.

A request weighs what it cost Defender, at least 1: `admit` takes one token up front (so a burst of
concurrent requests is bounded too), and `charge` takes the Defender requests beyond the first once the
work is done. A lookup served from cache costs 1, an unknown hostname 2 the first time (and 1 while it is
remembered as unknown). A bucket may go below zero that way; it refills at the same rate.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cachetools

_IDLE_SECONDS = 600.0  # a bucket idle this long is full again: forgetting it changes nothing


@dataclass(frozen=True, slots=True)
class SlowDown:
    """Over a limit: which one, and when the next request would be accepted."""

    scope: str  # "you" or "this channel"
    per_minute: int
    retry_after: float

    @property
    def message(self) -> str:
        wait = max(1, math.ceil(self.retry_after))
        who = "You have" if self.scope == "you" else "This channel has"
        return f"Slow down: {who} sent more than {self.per_minute} requests a minute. Try again in {wait} s."


class _Buckets:
    def __init__(self, per_minute: int, clock: Callable[[], float], maxsize: int) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._clock = clock
        self._levels: cachetools.TTLCache[str, tuple[float, float]] = cachetools.TTLCache(maxsize, _IDLE_SECONDS, clock)

    def wait_needed(self, key: str) -> float:
        """Seconds until a token is available (0 when one is); takes nothing."""
        level, _ = self._level(key)
        return 0.0 if level >= 1.0 else (1.0 - level) / self._rate

    def take(self, key: str, tokens: float = 1.0) -> None:
        level, now = self._level(key)
        self._levels[key] = (level - tokens, now)

    def _level(self, key: str) -> tuple[float, float]:
        now = self._clock()
        level, then = self._levels.get(key, (float(self.per_minute), now))
        return min(float(self.per_minute), level + (now - then) * self._rate), now


class RequestLimiter:
    """Thread-safe; a limit of 0 switches that limit off. A refused request uses no allowance."""

    def __init__(
        self,
        *,
        user_per_minute: int,
        channel_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        maxsize: int = 100_000,
    ) -> None:
        self._users = _Buckets(user_per_minute, clock, maxsize) if user_per_minute else None
        self._channels = _Buckets(channel_per_minute, clock, maxsize) if channel_per_minute else None
        self._lock = threading.Lock()

    def admit(self, team_id: str, channel_id: str, user_id: str) -> SlowDown | None:
        """Take one request from both the person's and the channel's allowance, or say how long to wait."""
        checks = self._checks(team_id, channel_id, user_id)
        with self._lock:
            for buckets, scope, key in checks:
                if buckets is not None:
                    wait = buckets.wait_needed(key)
                    if wait > 0:
                        return SlowDown(scope, buckets.per_minute, wait)
            for buckets, _, key in checks:
                if buckets is not None:
                    buckets.take(key)
        return None

    def charge(self, team_id: str, channel_id: str, user_id: str, tokens: int) -> None:
        """Take `tokens` more from both allowances (an admitted request's Defender requests beyond the first)."""
        if tokens <= 0:
            return
        with self._lock:
            for buckets, _, key in self._checks(team_id, channel_id, user_id):
                if buckets is not None:
                    buckets.take(key, float(tokens))

    def _checks(self, team_id: str, channel_id: str, user_id: str) -> list[tuple[_Buckets | None, str, str]]:
        return [
            (self._users, "you", f"{team_id}/{user_id}"),
            (self._channels, "this channel", f"{team_id}/{channel_id}"),
        ]
