"""Acknowledged commands in Redis, for every process: a hash of records and a sorted set of claims.

| key | type | holds |
|---|---|---|
| `work:items` | hash | command id → the record (JSON) |
| `work:claims` | sorted set | command id, scored by the time its claim runs out |

`claim_due` is one script, so of two surviving processes only one takes each command of a dead one.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import redis

from bot.state.redis.connection import RedisConnection
from bot.state.work import AcceptedCommand

log = logging.getLogger(__name__)

_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local item = redis.call('HGET', KEYS[1], id)
  if item then
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    table.insert(out, id)
    table.insert(out, item)
  else
    redis.call('ZREM', KEYS[2], id)
  end
end
return out
"""


class RedisWorkStore:
    durable = True

    def __init__(self, shared: RedisConnection) -> None:
        self._shared = shared
        self._items = shared.key("work", "items")
        self._claims = shared.key("work", "claims")
        self._claim = shared.client.register_script(_CLAIM)

    def record(self, command: AcceptedCommand, claim_until: float) -> None:
        def write(r: redis.Redis) -> None:
            pipe = r.pipeline(transaction=True)
            pipe.hset(self._items, command.id, command.encode())
            pipe.zadd(self._claims, {command.id: claim_until})
            pipe.execute()

        self._shared.run(write)

    def done(self, command_id: str) -> None:
        def delete(r: redis.Redis) -> None:
            pipe = r.pipeline(transaction=True)
            pipe.hdel(self._items, command_id)
            pipe.zrem(self._claims, command_id)
            pipe.execute()

        self._shared.run(delete)

    def renew(self, command_ids: Collection[str], claim_until: float) -> None:
        if command_ids:
            self._shared.run(lambda r: r.zadd(self._claims, dict.fromkeys(command_ids, claim_until), xx=True))

    def claim_due(self, now: float, claim_until: float, limit: int) -> list[AcceptedCommand]:
        raw = self._shared.run(
            lambda r: self._claim(keys=[self._items, self._claims], args=[now, claim_until, limit], client=r)
        )
        commands = []
        for command_id, text in zip(raw[::2], raw[1::2], strict=True):
            try:
                commands.append(AcceptedCommand.decode(text))
            except (ValueError, TypeError):
                log.warning("dropped an unreadable acknowledged-command record %s", command_id.decode())
                self.done(command_id.decode())
        return commands

    def close(self) -> None:
        pass  # the connection is the state backend's
