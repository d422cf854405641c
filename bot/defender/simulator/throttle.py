"""The tenant's rate limits: calls per minute and per hour for each API, counted in sliding windows.

Defender counts per application + tenant and per API (`/api/machines`, `/api/machines/{id}`, `/api/alerts` and
`/api/machines/{id}/alerts` each have their own counters): 100 calls a minute and 1,500 an hour. Graph's
security APIs have per-minute limits only. A refused call is not counted; its 429 carries `Retry-After`, the
seconds until the oldest call of the full window leaves it (at least one), so waiting it out always works.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Callable

from bot.defender.simulator.odata import ApiError

MINUTE = 60.0
HOUR = 3600.0


class RateWindows:
    """Sliding windows per API kind; `admit` raises the 429 a call over a limit gets."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._calls: defaultdict[tuple[str, float], deque[float]] = defaultdict(deque)

    def admit(self, kind: str, per_minute: int, per_hour: int | None) -> None:
        """Count one call of `kind`, or refuse it when the minute's or (if given) the hour's limit is reached."""
        now = self._clock()
        limits = [(MINUTE, per_minute), *([(HOUR, per_hour)] if per_hour is not None else [])]
        for span, limit in limits:
            window = self._calls[kind, span]
            while window and window[0] <= now - span:
                window.popleft()
            if len(window) >= limit:
                wait = max(1, math.ceil(window[0] + span - now))
                per = "minute" if span == MINUTE else "hour"
                raise ApiError(429, f"Over {limit} calls per {per}", headers={"Retry-After": str(wait)})
        for span, _ in limits:
            self._calls[kind, span].append(now)
