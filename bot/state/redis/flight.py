"""Single flight across processes: one Defender call per key at a time in the whole cluster.

The caller that wins `SET key token NX PX lock_ttl` makes the call; it checks first whether a result
landed just before it won (so a result written between a waiter's cache check and its lock attempt is not
fetched again). The others poll for the result (`landed`) every `poll` seconds. The lock expires on its
own, so a holder that dies mid-call does not wedge anyone: when the lock is gone and no result landed
(the holder failed or died), the next waiter takes the lock and calls itself. Release deletes the lock
only if it still holds this caller's token. When Redis is unavailable the call is made locally (the
process-local single flight in front still collapses this process's threads).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from bot.state.redis.connection import RedisConnection, RedisUnavailable

log = logging.getLogger(__name__)

_T = TypeVar("_T")

LOCK_TTL = 30.0  # longer than one Defender call with its retries (20 s timeout, 15 s retry budget)
POLL = 0.05

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class ClusterFlight:
    def __init__(
        self,
        shared: RedisConnection,
        *,
        lock_ttl: float = LOCK_TTL,
        poll: float = POLL,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._shared = shared
        self._lock_ttl = lock_ttl
        self._poll = poll
        self._sleep = sleep
        self._release = shared.client.register_script(_RELEASE)

    def run(self, key: str, work: Callable[[], _T], landed: Callable[[], _T | None]) -> tuple[_T, bool]:
        lock = self._shared.key("flight", key)
        token = uuid.uuid4().hex
        millis = max(1, int(self._lock_ttl * 1000))
        while True:
            try:
                won = bool(self._shared.run(lambda r: r.set(lock, token, nx=True, px=millis)))
            except RedisUnavailable:
                return work(), False
            if won:
                try:
                    value = landed()  # a result that landed just before the lock was free
                    if value is not None:
                        return value, True
                    return work(), False
                finally:
                    with contextlib.suppress(RedisUnavailable):  # if Redis is away, the lock expires by itself
                        self._shared.run(lambda r: self._release(keys=[lock], args=[token], client=r))
            # Another process is calling: wait for its result, or for its lock to go away.
            while True:
                self._sleep(self._poll)
                value = landed()
                if value is not None:
                    return value, True
                try:
                    held = bool(self._shared.run(lambda r: r.exists(lock)))
                except RedisUnavailable:
                    return work(), False
                if not held:
                    value = landed()  # it may have landed between the two reads
                    if value is not None:
                        return value, True
                    log.debug("flight %s: the holder finished without a result; trying", key)
                    break
