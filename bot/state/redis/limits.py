"""Per-person and per-channel request limits shared by every process (the same token buckets, in Redis).

Without this, N processes would let each person send N times `BOT_USER_RATE_PER_MINUTE`. One Lua script
refills and checks both buckets and takes from both only when both have a token, like `RequestLimiter`.
A bucket idle for ten minutes is full again, so its key expires then. `charge` (a request's Defender
requests beyond the first) is a second script that takes without checking. While Redis is away each
process falls back to its own buckets.
"""

from __future__ import annotations

from bot.state.limits import RequestLimiter, SlowDown
from bot.state.redis.connection import RedisConnection, RedisUnavailable

_IDLE_SECONDS = 600

# KEYS: the person's bucket, the channel's bucket. ARGV: per minute for each (0 = no limit).
# Each bucket is a hash {level, at}; time is the server's. Returns {0} when admitted, or {1|2, wait}.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local levels = {}
for i = 1, 2 do
  local per_minute = tonumber(ARGV[i])
  if per_minute > 0 then
    local level = tonumber(redis.call('HGET', KEYS[i], 'level') or per_minute)
    local at = tonumber(redis.call('HGET', KEYS[i], 'at') or now)
    level = math.min(per_minute, level + (now - at) * per_minute / 60)
    if level < 1 then
      return {i, tostring((1 - level) * 60 / per_minute)}
    end
    levels[i] = level
  end
end
for i = 1, 2 do
  if levels[i] then
    redis.call('HSET', KEYS[i], 'level', tostring(levels[i] - 1), 'at', tostring(now))
    redis.call('EXPIRE', KEYS[i], ARGV[3])
  end
end
return {0}
"""

# KEYS and ARGV[1..3] as `_ADMIT`; ARGV[4]: the tokens to take (a level may go below zero).
_CHARGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 1, 2 do
  local per_minute = tonumber(ARGV[i])
  if per_minute > 0 then
    local level = tonumber(redis.call('HGET', KEYS[i], 'level') or per_minute)
    local at = tonumber(redis.call('HGET', KEYS[i], 'at') or now)
    level = math.min(per_minute, level + (now - at) * per_minute / 60) - tonumber(ARGV[4])
    redis.call('HSET', KEYS[i], 'level', tostring(level), 'at', tostring(now))
    redis.call('EXPIRE', KEYS[i], ARGV[3])
  end
end
return 0
"""


class RedisRequestLimiter(RequestLimiter):
    def __init__(self, shared: RedisConnection, *, user_per_minute: int, channel_per_minute: int) -> None:
        super().__init__(user_per_minute=user_per_minute, channel_per_minute=channel_per_minute)
        self._shared = shared
        self._per_minute = (user_per_minute, channel_per_minute)
        self._script = shared.client.register_script(_ADMIT)
        self._charge = shared.client.register_script(_CHARGE)

    def admit(self, team_id: str, channel_id: str, user_id: str) -> SlowDown | None:
        user, channel = self._per_minute
        if not user and not channel:
            return None
        keys = self._keys(team_id, channel_id, user_id)
        args = [user, channel, _IDLE_SECONDS]
        try:
            answer = self._shared.run(lambda r: self._script(keys=keys, args=args, client=r))
        except RedisUnavailable:
            return super().admit(team_id, channel_id, user_id)  # this process's own buckets meanwhile
        if int(answer[0]) == 0:
            return None
        which = int(answer[0])
        return SlowDown("you" if which == 1 else "this channel", self._per_minute[which - 1], float(answer[1]))

    def charge(self, team_id: str, channel_id: str, user_id: str, tokens: int) -> None:
        user, channel = self._per_minute
        if tokens <= 0 or not (user or channel):
            return
        keys = self._keys(team_id, channel_id, user_id)
        args = [user, channel, _IDLE_SECONDS, tokens]
        try:
            self._shared.run(lambda r: self._charge(keys=keys, args=args, client=r))
        except RedisUnavailable:
            super().charge(team_id, channel_id, user_id, tokens)

    def _keys(self, team_id: str, channel_id: str, user_id: str) -> list[str]:
        return [
            self._shared.key("limit", "user", team_id, user_id),
            self._shared.key("limit", "channel", team_id, channel_id),
        ]
