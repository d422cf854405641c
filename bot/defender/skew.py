"""This host's clock against Microsoft's, read from the `Date` header every HTTP answer carries.

Watches take their watermark from Defender's own timestamps, so a wrong host clock loses nothing; but cards,
logs and "cached 3 min ago" use this host's clock, and a clock ahead of Defender's cannot be seen from alert
timestamps at all (they just look old). Said once per API host, with the figure, when over a minute apart.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable

import httpx

log = logging.getLogger(__name__)

SKEW_WARNING = 60.0  # seconds; the header has a resolution of one second and includes the network's delay


class ClockSkew:
    def __init__(self, service: str, now: Callable[[], float] = time.time) -> None:
        self._service = service
        self._now = now
        self._told = False
        self._lock = threading.Lock()

    def note(self, response: httpx.Response) -> None:
        """Read the answer's `Date`; warn once when this host is over a minute off (then read no more)."""
        if self._told:
            return
        try:
            server = email.utils.parsedate_to_datetime(response.headers.get("Date", ""))
        except (TypeError, ValueError):
            return  # no header, or one that is not an HTTP date: nothing to compare
        if server.tzinfo is None:
            return
        skew = self._now() - server.timestamp()
        with self._lock:
            if self._told or abs(skew) <= SKEW_WARNING:
                return
            self._told = True
        log.warning(
            "this host's clock is %.0f s %s %s's (its Date header): keep the host's time synchronised (NTP)",
            abs(skew),
            "ahead of" if skew > 0 else "behind",
            self._service,
        )
