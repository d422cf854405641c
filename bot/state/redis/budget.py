"""The Defender call budget shared by every process: sliding windows in Redis sorted sets.

Per API one sorted set holds the calls of the last hour (score: time of the call); the minute window is
the part of it younger than 60 s. A Lua script counts, decides and records in one step, so two processes
can never both take the last slot. The caps per API and priority are `BudgetCaps`, as for `RateBudget` (each API
its own limits, background work a share of each window), and the waits it reports are the same. Time comes from
the Redis server (`TIME`), so processes on hosts with different clocks share one window; tests may pass a clock.

A 429's `Retry-After` is kept in a key that expires when the block ends, so one process's 429 stops every
process (`SharedThrottle`).

When Redis is unavailable each process falls back to a `RateBudget` with `1/N` of the limits
(`BOT_PROCESSES`), so N processes together still stay under the tenant's limit. The calls made meanwhile
are added to the shared windows when Redis returns.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from functools import partial

import redis

from bot.defender.limits import (
    HOUR,
    MINUTE,
    Api,
    ApiLimits,
    BudgetCaps,
    BudgetExhausted,
    Priority,
    WindowUsage,
    hour_share_left,
)
from bot.state.budget import RateBudget
from bot.state.redis.connection import RedisConnection, RedisUnavailable

log = logging.getLogger(__name__)

# Every script's first argument is the time: '' takes the Redis server's clock (one clock for all processes).
_NOW = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
"""

# KEYS: the API's call log. ARGV: now ('' = the server's clock), minute cap, hour cap, member.
# Returns the wait in seconds as a string ('0' = admitted and recorded).
_ACQUIRE = (
    _NOW
    + """
local minute_cap = tonumber(ARGV[2])
local hour_cap = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 3600)
local hour = redis.call('ZCARD', KEYS[1])
local minute = redis.call('ZCOUNT', KEYS[1], '(' .. (now - 60), '+inf')
local wait = 0
if minute >= minute_cap then
  local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - 60), '+inf', 'WITHSCORES', 'LIMIT',
    minute - minute_cap, 1)
  wait = math.max(wait, tonumber(oldest[2]) + 60 - now)
end
if hour >= hour_cap then
  local oldest = redis.call('ZRANGE', KEYS[1], hour - hour_cap, hour - hour_cap, 'WITHSCORES')
  wait = math.max(wait, tonumber(oldest[2]) + 3600 - now)
end
if wait > 0 then
  return tostring(wait)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], 3601000)
return '0'
"""
)

# KEYS: the API's call log. ARGV: now ('' = server clock). Returns {calls in the last minute, in the last hour}.
_USAGE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 3600)
return {redis.call('ZCOUNT', KEYS[1], '(' .. (now - 60), '+inf'), redis.call('ZCARD', KEYS[1])}
"""
)

# KEYS: the block key. ARGV: milliseconds. Extends a block, never shortens one.
_BLOCK = """
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
"""

# KEYS: the API's call log. ARGV: now ('' = server clock), then pairs of (time, member) made while Redis was away.
_REPLAY = (
    _NOW
    + """
for i = 2, #ARGV, 2 do
  local at = tonumber(ARGV[i])
  if at > now - 3600 then
    redis.call('ZADD', KEYS[1], math.min(at, now), ARGV[i + 1])
  end
end
redis.call('PEXPIRE', KEYS[1], 3601000)
return 1
"""
)


class RedisRateBudget:
    """`RateBudget`'s behaviour across processes; a `CallGate` and a `SharedThrottle` for the client."""

    def __init__(
        self,
        shared: RedisConnection,
        per_minute: int = 100,
        per_hour: int = 1500,
        *,
        background_minute_share: float = 0.5,
        background_hour_share: float = 0.8,
        per_api: Mapping[Api, ApiLimits] | None = None,
        processes: int = 1,
        clock: Callable[[], float] | None = None,
    ) -> None:
        # Per-API overrides on top of the Graph APIs' defaults, as for `RateBudget`.
        self.limits = BudgetCaps(per_minute, per_hour, background_minute_share, background_hour_share, per_api or {})
        self.per_minute = per_minute
        self.per_hour = per_hour
        self.processes = max(1, processes)
        self._shared = shared
        self._clock = clock  # None: the Redis server's clock
        # While Redis is away: this process's share of the limits, and the calls made under it.
        self.local = RateBudget.from_caps(self.limits.divided(self.processes), clock=clock or time.monotonic)
        self._lock = threading.Lock()
        self._made_locally: dict[Api, list[float]] = {}
        self._acquire_script = shared.client.register_script(_ACQUIRE)
        self._usage_script = shared.client.register_script(_USAGE)
        self._block_script = shared.client.register_script(_BLOCK)
        self._replay_script = shared.client.register_script(_REPLAY)
        shared.on_recover(self.reconcile)

    def _key(self, api: Api) -> str:
        return self._shared.key("budget", api.value)

    def _now_arg(self) -> str:
        return "" if self._clock is None else repr(self._clock())

    def acquire(self, api: Api, priority: Priority = Priority.INTERACTIVE) -> None:
        """Record one call to `api` in the shared windows, or raise `BudgetExhausted` with the wait."""
        minute_cap, hour_cap = self.limits.caps(priority, api)
        if minute_cap == 0 or hour_cap == 0:
            raise BudgetExhausted(api, MINUTE)
        args: list[str | int] = [self._now_arg(), minute_cap, hour_cap, uuid.uuid4().hex]
        try:
            answer = self._shared.run(lambda r: self._acquire_script(keys=[self._key(api)], args=args, client=r))
        except RedisUnavailable:
            self.local.acquire(api, priority)  # raises BudgetExhausted past this process's share
            with self._lock:
                self._made_locally.setdefault(api, []).append(self._clock() if self._clock else time.time())
            return
        wait = float(answer)
        if wait > 0:
            raise BudgetExhausted(api, wait)

    def usage(self, api: Api) -> WindowUsage:
        try:
            minute, hour = self._shared.run(
                lambda r: self._usage_script(keys=[self._key(api)], args=[self._now_arg()], client=r)
            )
        except RedisUnavailable:
            return self.local.usage(api)
        limits = self.limits.limits(api)
        return WindowUsage(api, int(minute), int(hour), limits.per_minute, limits.per_hour)

    def hour_share_left(self, api: Api, priority: Priority = Priority.INTERACTIVE) -> float:
        """As `RateBudget.hour_share_left`, over the shared windows (this process's share while Redis is away)."""
        return hour_share_left(self.limits, self.usage(api), priority)

    # 429s -----------------------------------------------------------------------------------

    def _block_key(self, api: Api) -> str:
        return self._shared.key("blocked", api.value)

    def block(self, api: Api, seconds: float) -> None:
        """Every process refuses calls to `api` for `seconds` (Defender's `Retry-After`)."""
        millis = max(1, int(seconds * 1000))
        # When Redis is away, the client's own memory of the 429 still holds in this process.
        with contextlib.suppress(RedisUnavailable):
            self._shared.run(lambda r: self._block_script(keys=[self._block_key(api)], args=[millis], client=r))

    def blocked_for(self, api: Api) -> float:
        try:
            left = int(self._shared.run(lambda r: r.pttl(self._block_key(api))))
        except RedisUnavailable:
            return 0.0
        return left / 1000 if left > 0 else 0.0

    # Reconciling ----------------------------------------------------------------------------

    def reconcile(self) -> None:
        """Add the calls made on the local share while Redis was away to the shared windows."""
        with self._lock:
            made, self._made_locally = self._made_locally, {}
        for api, times in made.items():
            args: list[str] = [self._now_arg()]
            for at in times:
                args += [repr(at), f"offline-{uuid.uuid4().hex}"]
            key = self._key(api)
            try:
                self._shared.run(partial(self._replay, key, args))
            except (RedisUnavailable, redis.RedisError):
                with self._lock:  # keep them for the next recovery
                    self._made_locally.setdefault(api, []).extend(times)
                return
            log.info("shared budget: added %d calls to %s made while Redis was away", len(times), api.value)

    def _replay(self, key: str, args: list[str], client: redis.Redis) -> object:
        return self._replay_script(keys=[key], args=args, client=client)


__all__ = ["HOUR", "MINUTE", "RedisRateBudget"]
