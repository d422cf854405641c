"""One process's connection to the shared Redis, and what it does when Redis is away.

Every Redis call of the bot goes through `RedisConnection.run`. Timeouts are short (Slack waits 3 s for an
acknowledgement, and a lookup must not wait on a dead server): a call that fails marks Redis *down* for a
back-off period, during which calls fail at once with `RedisUnavailable` without touching the network. When the
period ends, one call at a time goes through as the *probe* (the others still fail at once): its success brings
Redis back, its failure doubles the period (1 s, 2 s, … up to 30 s). Calls that were already under way when Redis
went down fail too, but do not lengthen the period: a 2 s stall costs a few seconds, however busy the process
was. Callers then fall back to process-local state: the local cache, a `1/N` share of
the Defender budget, local event dedupe. The first failure and the recovery are logged at WARNING;
`on_recover` callbacks let each piece reconcile (the budget replays the calls it made meanwhile).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.state.urls import RedisUrl, parse_redis_url

log = logging.getLogger(__name__)

_T = TypeVar("_T")

SOCKET_TIMEOUT = 0.5
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0


class RedisUnavailable(Exception):
    """Redis did not answer (or is in its back-off period): use process-local state instead."""


class RedisConnection:
    """A redis-py client (thread-safe connection pool) with a key prefix, health tracking and back-off."""

    def __init__(
        self,
        url: str | RedisUrl,
        *,
        socket_timeout: float = SOCKET_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        client: redis.Redis | None = None,
    ) -> None:
        self.url = url if isinstance(url, RedisUrl) else parse_redis_url(url)
        self.prefix = self.url.prefix
        self.client: redis.Redis = client or redis.Redis.from_url(
            self.url.client_url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),  # no silent retries: a dead server must cost one short timeout
            health_check_interval=30,
            max_connections=64,
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._backoff = 0.0
        self._probing = False  # a probe is under way: other calls fail at once
        self._generation = 0  # counts every change between up and down, to tell stale outcomes
        self._failures = 0
        self._recover: list[Callable[[], None]] = []

    def key(self, *parts: object) -> str:
        return ":".join([self.prefix, *(str(part) for part in parts)])

    @property
    def available(self) -> bool:
        """False while Redis is marked down (the last call failed and the back-off has not passed)."""
        with self._lock:
            return self._backoff == 0.0

    @property
    def failures(self) -> int:
        """How many times Redis has gone away since start-up (for /healthz)."""
        with self._lock:
            return self._failures

    @property
    def backoff(self) -> float:
        """Seconds of the current back-off period (0 while Redis is up)."""
        with self._lock:
            return self._backoff

    def on_recover(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._recover.append(callback)

    def run(self, operation: Callable[[redis.Redis], _T]) -> _T:
        """Run one operation (a command, a pipeline, a script); `RedisUnavailable` if Redis is away."""
        with self._lock:
            probe = self._backoff > 0.0
            if probe and (self._probing or self._clock() < self._down_until):
                raise RedisUnavailable("Redis is unavailable (waiting before trying again)")
            if probe:
                self._probing = True
            generation = self._generation
        try:
            result = operation(self.client)
        except (redis.RedisError, OSError) as exc:  # unreachable, timing out, loading, out of memory, …
            self._failed(exc, probe, generation)
            raise RedisUnavailable(f"Redis is unavailable: {type(exc).__name__}") from None
        except BaseException:
            self._end_probe(probe, generation)
            raise
        self._succeeded(probe, generation)
        return result

    def _end_probe(self, probe: bool, generation: int) -> None:
        with self._lock:
            if probe and generation == self._generation:
                self._probing = False

    def _failed(self, exc: BaseException, probe: bool, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # started before Redis went down (or came back): that change is counted already
            first = not probe
            if probe:  # the probe failed: wait twice as long before the next one
                self._probing = False
                self._backoff = min(MAX_BACKOFF, self._backoff * 2)
            else:
                self._backoff = FIRST_BACKOFF
                self._generation += 1
                self._failures += 1
            self._down_until = self._clock() + self._backoff
        if first:
            log.warning(
                "shared state: Redis at %s is unavailable (%s); using process-local state (cache, 1/N of the"
                " Defender budget, event dedupe) until it returns",
                self.url.shown,
                type(exc).__name__,
            )

    def _succeeded(self, probe: bool, generation: int) -> None:
        with self._lock:
            if self._backoff == 0.0 or (not probe and generation == self._generation):
                return
            # The probe, or a call that started before Redis was marked down and was answered after all.
            self._backoff, self._probing = 0.0, False
            self._generation += 1
            callbacks = list(self._recover)
        log.warning("shared state: Redis at %s is back; shared budget, cache and watches resume", self.url.shown)
        for callback in callbacks:
            try:
                callback()
            except RedisUnavailable:
                return
            except Exception:
                log.exception("shared state: reconciling after Redis came back failed")

    def ping(self) -> bool:
        try:
            return bool(self.run(lambda r: r.ping()))
        except RedisUnavailable:
            return False

    def close(self) -> None:
        self.client.close()
