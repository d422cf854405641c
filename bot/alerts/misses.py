"""Devices Defender said it does not know, remembered for a while (a negative cache).

Without it every lookup of an unknown hostname costs two Defender calls, again and again, while a known
device is answered from the name cache: a person could spend the tenant's budget on made-up names, and
the difference in time would tell a scoped member which names exist outside their groups. A device
onboarded meanwhile is found once its entry expires (`MISS_TTL`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import cachetools

from bot.defender.errors import DeviceNotFound

MISS_TTL = 600.0


class Misses:
    """Thread-safe and bounded: hostname or machine id -> the "did you mean" suggestions of the miss."""

    def __init__(self, clock: Callable[[], float], *, maxsize: int = 4096, ttl: float = MISS_TTL) -> None:
        self._lock = threading.Lock()
        self._known: cachetools.TTLCache[str, tuple[str, ...]] = cachetools.TTLCache(maxsize, ttl, clock)

    def remember(self, reference: str, miss: DeviceNotFound) -> None:
        with self._lock:
            self._known[reference] = miss.suggestions

    def check(self, reference: str) -> None:
        """Raise the remembered `DeviceNotFound` for `reference`, if there is one."""
        with self._lock:
            suggestions = self._known.get(reference)
        if suggestions is not None:
            raise DeviceNotFound(reference, suggestions=suggestions)
