"""A manual clock for time-compressed runs: the benchmarks' simulated hours and the tests' cache ages.

`FakeClock()` gives monotonic seconds and `clock.wall()` the matching UTC datetime; time moves only when the
caller says so (`advance`), and `clock.sleep` stands in for `time.sleep`, so retries and back-offs cost no real
time. Production code never uses it: it takes a `clock` (and a `sleep`) and gets `time.monotonic`.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # what `wall()` says before the clock has moved


class FakeClock:
    """A manual clock: `clock()` gives monotonic seconds, `clock.wall()` the matching UTC datetime."""

    def __init__(self, start: float = 1000.0) -> None:
        self._lock = threading.Lock()
        self._start = start
        self.now = start

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    def wall(self) -> datetime:
        return START + timedelta(seconds=self() - self._start)

    # Lets the clock stand in for `time.sleep`: sleeping advances time instead of waiting.
    def sleep(self, seconds: float) -> None:
        self.advance(seconds)
