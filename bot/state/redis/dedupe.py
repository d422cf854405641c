"""Event dedupe across processes: Slack may retry a delivery to another process than the first one.

Each `event_id` is claimed with `SET key 1 NX EX ttl`: the process that sets it handles the event, every
other delivery is dropped. The process-local memory is kept too, so while Redis is away each process
still drops the retries that reach it.
"""

from __future__ import annotations

import contextlib

from bot.state.dedupe import EventDeduper
from bot.state.redis.connection import RedisConnection, RedisUnavailable


class RedisEventDeduper(EventDeduper):
    def __init__(self, shared: RedisConnection, ttl: float = 3600.0, maxsize: int = 10_000) -> None:
        super().__init__(ttl, maxsize)
        self._shared = shared
        self._ttl = max(1, int(ttl))

    def first_time(self, event_id: str) -> bool:
        if not super().first_time(event_id):
            return False  # this process has seen it
        key = self._shared.key("event", event_id)
        try:
            claimed = self._shared.run(lambda r: r.set(key, b"1", nx=True, ex=self._ttl))
        except RedisUnavailable:
            return True  # only this process's memory, while Redis is away
        return bool(claimed)

    def forget(self, event_id: str) -> None:
        super().forget(event_id)
        key = self._shared.key("event", event_id)
        with contextlib.suppress(RedisUnavailable):  # it then lapses with its TTL
            self._shared.run(lambda r: r.delete(key))
