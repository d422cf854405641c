"""Single flight across processes: one Defender call per key at a time in the whole cluster.

The caller that wins `SET key token NX PX lock_ttl` makes the call; it checks first whether a result
landed just before it won (so a result written between a waiter's cache check and its lock attempt is not
fetched again). The others poll for the result (`landed`) every `poll` seconds. The lock is short-lived
(`lock_ttl`, 3 s) and the holder renews it every third of that while its call runs, however long the call
takes; a holder that dies (kill -9) stops renewing, so its lock is gone within `lock_ttl` and no one waits on
it longer than that (a 30 s lock without renewal held every waiter, and so every worker, for up to 30 s).
When the lock is gone and no result landed (the holder failed or died), the next waiter takes the lock and
calls itself. Release deletes the lock
only if it still holds this caller's token. When Redis is unavailable the call is made locally (the
process-local single flight in front still collapses this process's threads).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

from bot.state.redis.connection import RedisConnection, RedisUnavailable

log = logging.getLogger(__name__)

_T = TypeVar("_T")

LOCK_TTL = 3.0  # how long a lock outlives its holder's last renewal (renewed every LOCK_TTL / 3)
POLL = 0.05

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
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
        self._renew = shared.client.register_script(_RENEW)

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
                    with self._renewed(lock, token, millis):
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

    @contextlib.contextmanager
    def _renewed(self, lock: str, token: str, millis: int) -> Iterator[None]:
        """Keep the lock alive while the call runs: a thread renews it every third of its lifetime."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self._lock_ttl / 3):
                with contextlib.suppress(RedisUnavailable):  # Redis away: the lock lapses, a waiter may call too
                    self._shared.run(lambda r: self._renew(keys=[lock], args=[token, millis], client=r))

        threading.Thread(target=renew, daemon=True, name="flight-renewal").start()
        try:
            yield
        finally:
            stop.set()  # a renewal racing the release finds another token (or none) and does nothing
