"""Event dedupe: Slack retries a delivery it thinks failed, and a retry must not be answered twice."""

from __future__ import annotations

import threading

import cachetools


class EventDeduper:
    """Remembers the `event_id`s this process has handled, for an hour."""

    def __init__(self, ttl: float = 3600.0, maxsize: int = 10_000) -> None:
        self._seen: cachetools.TTLCache[str, bool] = cachetools.TTLCache(maxsize, ttl)
        self._lock = threading.Lock()

    def first_time(self, event_id: str) -> bool:
        with self._lock:
            if event_id in self._seen:
                return False
            self._seen[event_id] = True
            return True

    def forget(self, event_id: str) -> None:
        """Take back a `first_time` whose work failed, so that trying again is not dropped as a repeat."""
        with self._lock:
            self._seen.pop(event_id, None)
