"""How long a cached alert list counts as fresh: the TTL while the hour's call budget is ample, longer as it runs low.

Defender allows 1,500 calls an hour per API. A storm that wants fresh data every TTL spends them by the half hour
and leaves the rest of the hour with stale data or none. So the TTL is stretched by the share of the hour's budget
left (above a reserve): `ttl / share²`, up to an hour once only the reserve is left. The square stretches early
(half the budget left: 4 × the TTL), so calls thin out smoothly rather than stop: each minute still refreshes some
devices (`bench.service_calls`: fresh data in 60 of 60 minutes of an all-hour storm; with `ttl / share`, 52), and
the reserve keeps calls for devices with no cached list at all (and for Refresh buttons). Whoever has a cached
copy gets it, with its age on the card, not a budget notice. Background work (watch cards) measures its share
against its own, smaller cap, so it stretches first and leaves the budget to people.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.defender.limits import HOUR, Priority

RESERVE = 0.05  # of the hour's budget, kept for devices with no cached list
LONGEST = HOUR  # the longest a paced list counts as fresh, hence how long a copy is worth keeping


class Pacing:
    """`share_left(priority)`: the share (0-1) of the hour's budget still free for calls of that priority; None: no
    budget to pace by (the TTL holds)."""

    def __init__(
        self,
        ttl: float,
        share_left: Callable[[Priority], float] | None = None,
        *,
        longest: float = LONGEST,
        reserve: float = RESERVE,
    ) -> None:
        if not 0.0 <= reserve < 1.0:
            raise ValueError("the reserve must be a share below 1")
        self.ttl = ttl
        self._share_left = share_left
        self._reserve = reserve
        self.longest = max(ttl, longest) if share_left is not None else ttl

    def fresh_for(self, priority: Priority) -> float:
        """Seconds a cached alert list counts as fresh for a lookup of `priority`, right now."""
        if self._share_left is None:
            return self.ttl
        usable = (self._share_left(priority) - self._reserve) / (1.0 - self._reserve)
        if usable >= 1.0:
            return self.ttl
        if usable <= 0.0 or self.ttl / usable**2 >= self.longest:
            return self.longest
        return self.ttl / usable**2
