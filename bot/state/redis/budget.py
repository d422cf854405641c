"""The Defender call budget shared by every process: sliding windows in Redis sorted sets.

Per API one sorted set holds the calls of the last hour (score: time of the call); the minute window is
the part of it younger than 60 s. A Lua script counts, decides and records in one step, so two processes
can never both take the last slot. The caps per API and priority are `BudgetCaps`, as for `RateBudget` (each API
its own limits, background work a share of each window), and the waits it reports are the same. Time comes from
the Redis server (`TIME`), so processes on hosts with different clocks share one window; tests may pass a clock.

A 429's `Retry-After` is kept in a key that expires when the block ends, so one process's 429 stops every
process (`SharedThrottle`).

When Redis is unavailable each process falls back to a `RateBudget` with `1/N` of the limits
(`BOT_PROCESSES`), so N processes together still stay under the tenant's limit. That share does not start empty:
each process remembers how full the shared windows were at its last answer from Redis and counts `1/N` of those
calls as spent, so the calls made just before the outage are not spent a second time. The calls made meanwhile
are added to the shared windows when Redis returns.

If the Redis server's clock steps back, the calls logged "in the future" are moved back with it (newest at the
new now, spacing kept), so the minute window stays a minute long rather than refusing calls until the clock
catches up.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import redis
from redis.commands.core import Script

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

# After `_NOW`, for KEYS[1], a call log: when the clock stepped back past the newest call, shift every call back by
# the step (the newest lands at now), so windows keep their length; it never makes room sooner than real time.
_REBASE = """
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if newest[2] and tonumber(newest[2]) > now then
  local step = tonumber(newest[2]) - now
  local calls = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #calls, 2 do
    redis.call('ZADD', KEYS[1], tonumber(calls[i + 1]) - step, calls[i])
  end
end
"""

# KEYS: the API's call log. ARGV: now ('' = the server's clock), minute cap, hour cap, member.
# Returns {the wait in seconds as a string ('0' = admitted and recorded), calls in the last minute, in the last hour,
# now}.
_ACQUIRE = (
    _NOW
    + _REBASE
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
  return {tostring(wait), minute, hour, tostring(now)}
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], 3601000)
return {'0', minute + 1, hour + 1, tostring(now)}
"""
)

# KEYS: the API's call log. ARGV: now ('' = server clock). Returns {calls in the last minute, in the last hour, now}.
_USAGE = (
    _NOW
    + _REBASE
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 3600)
return {redis.call('ZCOUNT', KEYS[1], '(' .. (now - 60), '+inf'), redis.call('ZCARD', KEYS[1]), tostring(now)}
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


# KEYS: the API's call log. ARGV: now ('' = server clock), when this process last saw the windows (server clock),
# the calls it saw in the minute and in the hour window, a unique tag. A Redis that restarted has lost the calls
# made before: put back as many as were seen (at the time they were seen), counting what is there already, so
# every process doing it does not add them twice.
_FLOOR = (
    _NOW
    + """
local at = math.min(tonumber(ARGV[2]), now)
local minute = redis.call('ZCOUNT', KEYS[1], '(' .. (at - 60), at)
local hour = redis.call('ZCOUNT', KEYS[1], '(' .. (at - 3600), at)
for i = minute + 1, tonumber(ARGV[3]) do
  redis.call('ZADD', KEYS[1], at, 'seen-' .. ARGV[5] .. '-' .. i)
  hour = hour + 1
end
for i = hour + 1, tonumber(ARGV[4]) do
  redis.call('ZADD', KEYS[1], at - 60, 'seen-hour-' .. ARGV[5] .. '-' .. i)
end
redis.call('PEXPIRE', KEYS[1], 3601000)
return 1
"""
)


@dataclass(frozen=True, slots=True)
class _SeenUsage:
    """The shared windows of one API at this process's last answer from Redis, `at` on the local clock."""

    minute: int
    hour: int
    at: float
    server_at: float  # the same moment on the clock of the shared windows


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
        # While Redis is away: this process's share of the limits, and the calls made under it. The share is made
        # afresh at each outage, counting 1/N of the shared windows as last seen (`_seen`) as spent.
        self._local_clock = clock or time.monotonic
        self.local = self._local_share()
        self._outage_share_ready = False
        self._seen: dict[Api, _SeenUsage] = {}
        self._lock = threading.Lock()
        self._made_locally: dict[Api, list[float]] = {}
        self._acquire_script = shared.client.register_script(_ACQUIRE)
        self._usage_script = shared.client.register_script(_USAGE)
        self._block_script = shared.client.register_script(_BLOCK)
        self._replay_script = shared.client.register_script(_REPLAY)
        self._floor_script = shared.client.register_script(_FLOOR)
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
            wait, minute, hour, server_now = self._shared.run(
                lambda r: self._acquire_script(keys=[self._key(api)], args=args, client=r)
            )
        except RedisUnavailable:
            self._outage_share().acquire(api, priority)  # raises BudgetExhausted past this process's share
            with self._lock:
                self._made_locally.setdefault(api, []).append(self._clock() if self._clock else time.time())
            return
        self._saw(api, int(minute), int(hour), float(server_now))
        if float(wait) > 0:
            raise BudgetExhausted(api, float(wait))

    def usage(self, api: Api) -> WindowUsage:
        try:
            minute, hour, server_now = self._shared.run(
                lambda r: self._usage_script(keys=[self._key(api)], args=[self._now_arg()], client=r)
            )
        except RedisUnavailable:
            return self._outage_share().usage(api)
        self._saw(api, int(minute), int(hour), float(server_now))
        limits = self.limits.limits(api)
        return WindowUsage(api, int(minute), int(hour), limits.per_minute, limits.per_hour)

    def hour_share_left(self, api: Api, priority: Priority = Priority.INTERACTIVE) -> float:
        """As `RateBudget.hour_share_left`, over the shared windows (this process's share while Redis is away)."""
        return hour_share_left(self.limits, self.usage(api), priority)

    # While Redis is away ----------------------------------------------------------------------

    def _local_share(self) -> RateBudget:
        return RateBudget.from_caps(self.limits.divided(self.processes), clock=self._local_clock)

    def _saw(self, api: Api, minute: int, hour: int, server_now: float) -> None:
        with self._lock:
            self._seen[api] = _SeenUsage(minute, hour, self._local_clock(), server_now)

    def _outage_share(self) -> RateBudget:
        """This process's share for the current outage: made at its first call, with `1/N` of the calls last seen
        in each shared window (rounded up) already spent, so N processes together stay under the cap."""
        with self._lock:
            if not self._outage_share_ready:
                share = self._local_share()
                for api, seen in self._seen.items():
                    share.assume_spent(api, -(-seen.minute // self.processes), -(-seen.hour // self.processes), seen.at)
                self.local, self._outage_share_ready = share, True
            return self.local

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
        """Redis is back: put back what a restart lost of the windows as last seen, then add the calls made on the
        local share meanwhile."""
        with self._lock:
            made, self._made_locally = self._made_locally, {}
            seen = dict(self._seen)
            self._outage_share_ready = False  # the next outage starts from what Redis says then
        for api, usage in seen.items():
            args: list[str | int] = [self._now_arg(), repr(usage.server_at), usage.minute, usage.hour, uuid.uuid4().hex]
            if not self._run_script(self._floor_script, api, args):
                break
        for api, times in made.items():
            replay: list[str | int] = [self._now_arg()]
            for at in times:
                replay += [repr(at), f"offline-{uuid.uuid4().hex}"]
            if not self._run_script(self._replay_script, api, replay):
                with self._lock:  # keep them for the next recovery
                    self._made_locally.setdefault(api, []).extend(times)
                continue
            log.info("shared budget: added %d calls to %s made while Redis was away", len(times), api.value)

    def _run_script(self, script: Script, api: Api, args: list[str | int]) -> bool:
        """Run one reconciling script on `api`'s call log; False when Redis went away again."""
        key = self._key(api)
        try:
            self._shared.run(partial(self._script_on, script, key, args))
        except (RedisUnavailable, redis.RedisError):
            return False
        return True

    @staticmethod
    def _script_on(script: Script, key: str, args: list[str | int], client: redis.Redis) -> object:
        return script(keys=[key], args=args, client=client)


__all__ = ["HOUR", "MINUTE", "RedisRateBudget"]
