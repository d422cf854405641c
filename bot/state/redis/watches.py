"""The watch store on Redis: the same `WatchStore` semantics as the SQLite one, for several processes.

Every write that must be atomic is one Lua script (Redis runs a script alone, like a transaction):
`start_watch` (find-or-create per channel and device), `record_check` (new state, check time and the
changes not seen before, under one check id), the reply updates and the poller's lease. The change keys
of each watch live in a set, so a change found twice (overlapping polls, a check repeated after a crash,
two pollers during a hand-over) is recorded once: the idempotency keys are shared by every process.

Keys, under the URL's prefix (`device-alerts` by default):

| key | type | holds |
|---|---|---|
| `watch:seq`, `check:seq` | counter | the last watch id and check id handed out |
| `watch:{id}` | hash | a watch's fields (absent field = none) |
| `watches:live` | sorted set | ids of watches not ended |
| `watch:live:{channel}:{machine}` | string | the live watch of that channel and device |
| `state:{id}` | hash | alert id → `[status, assigned_to, lastUpdateTime]` |
| `keys:{id}` | set | the change keys recorded for the watch |
| `reply:{watch}:{check}` (+ `:meta`) | list (+ hash) | one check's changes, in order (+ `attempted_at`, `posted_ts`) |
| `pending` | sorted set | `{watch}:{check}` of replies not yet posted, by check id |
| `meta` | hash | the poller's watermark and other settings |
| `lease` | hash | the poller lease: `holder`, `expires` |
| `epoch` | string | a random token written when the store is first used: a new one means the data was lost |

Posted replies expire after 30 days and an ended watch's keys 30 days after it ended; live watches keep
everything. Needs a single Redis server (or a primary with replicas), not Redis Cluster: the scripts touch
keys they compute.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from bot.state.redis.connection import RedisConnection
from bot.state.watches import AlertState, Change, PendingReply, Watch, WatchStatus, iso_time, parse_time, watch_from_row

RETAIN_SECONDS = 30 * 24 * 3600

_START = """
local id = redis.call('GET', KEYS[3])
if id then
  local status = redis.call('HGET', ARGV[8] .. id, 'status')
  if (not status) or status == 'ended' then id = false end
end
if id then
  redis.call('HSET', ARGV[8] .. id, 'expires_at', ARGV[7], 'filter_text', ARGV[4], 'created_by', ARGV[5],
    'status', 'active')
  redis.call('HDEL', ARGV[8] .. id, 'pause_reason')
  return {id, 0}
end
id = tostring(redis.call('INCR', KEYS[1]))
redis.call('HSET', ARGV[8] .. id, 'id', id, 'channel', ARGV[1], 'machine_id', ARGV[2], 'device_name', ARGV[3],
  'filter_text', ARGV[4], 'created_by', ARGV[5], 'created_at', ARGV[6], 'expires_at', ARGV[7], 'status', 'active')
redis.call('SET', KEYS[3], id)
redis.call('ZADD', KEYS[2], id, id)
return {id, 1}
"""

# KEYS: watch hash, live set. ARGV: id, status, reason, has reason ('1'/'0'), live-key prefix, state key, keys key.
_STATUS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], 'pause_reason', ARGV[3])
else
  redis.call('HDEL', KEYS[1], 'pause_reason')
end
local live = ARGV[5] .. redis.call('HGET', KEYS[1], 'channel') .. ':' .. redis.call('HGET', KEYS[1], 'machine_id')
if ARGV[2] == 'ended' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  if redis.call('GET', live) == ARGV[1] then redis.call('DEL', live) end
  for _, key in ipairs({KEYS[1], ARGV[6], ARGV[7]}) do redis.call('EXPIRE', key, ARGV[8]) end
else
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1])
  local current = redis.call('GET', live)
  if (not current) or tonumber(current) < tonumber(ARGV[1]) then redis.call('SET', live, ARGV[1]) end
  for _, key in ipairs({KEYS[1], ARGV[6], ARGV[7]}) do redis.call('PERSIST', key) end
end
return 1
"""

_SET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# KEYS: watch hash, state hash, change keys, check counter, pending set.
# ARGV: watch id, checked_at, reply-key prefix, number of state entries, then (alert id, state) pairs,
# then (change key, payload) pairs. Returns the new check id, or nil when no change was new.
_RECORD = """
local id = ARGV[1]
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'last_checked_at', ARGV[2])
end
local fresh = {}
local seen = {}
while i <= #ARGV do
  local key = ARGV[i]
  if not seen[key] and redis.call('SISMEMBER', KEYS[3], key) == 0 then
    seen[key] = true
    table.insert(fresh, key)
    table.insert(fresh, ARGV[i + 1])
  end
  i = i + 2
end
if #fresh == 0 then return false end
local check = redis.call('INCR', KEYS[4])
local member = id .. ':' .. check
for j = 1, #fresh, 2 do
  redis.call('SADD', KEYS[3], fresh[j])
  redis.call('RPUSH', ARGV[3] .. member, fresh[j + 1])
end
redis.call('ZADD', KEYS[5], check, member)
return check
"""

# KEYS: pending set. ARGV: reply-key prefix. Returns flat [member, attempted_at or '', n, payload × n, …].
_PENDING = """
local out = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local items = redis.call('LRANGE', ARGV[1] .. member, 0, -1)
  table.insert(out, member)
  table.insert(out, redis.call('HGET', ARGV[1] .. member .. ':meta', 'attempted_at') or '')
  table.insert(out, #items)
  for _, item in ipairs(items) do table.insert(out, item) end
end
return out
"""

# KEYS: reply list, reply meta, pending set. ARGV: member, field, value, retain seconds ('' = keep).
_MARK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
if ARGV[2] == 'posted_ts' then
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return 1
"""

_LEASE = """
local holder = redis.call('HGET', KEYS[1], 'holder')
local expires = tonumber(redis.call('HGET', KEYS[1], 'expires') or '0')
if holder and holder ~= ARGV[1] and expires > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'expires', ARGV[3])
return 1
"""

# KEYS: epoch. ARGV: a fresh token, written when there is none. Returns the token in force.
_EPOCH = """
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""

_RELEASE = """
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisWatchStore:
    """`WatchStore` on Redis; thread-safe (redis-py's pool), shared by every process on the same URL."""

    def __init__(self, shared: RedisConnection) -> None:
        self._shared = shared
        self._key = shared.key
        register = shared.client.register_script
        self._start = register(_START)
        self._status = register(_STATUS)
        self._set_if_exists = register(_SET_IF_EXISTS)
        self._record = register(_RECORD)
        self._pending = register(_PENDING)
        self._mark = register(_MARK)
        self._lease = register(_LEASE)
        self._release = register(_RELEASE)
        self._epoch_script = register(_EPOCH)
        self._epoch: str | None = None  # the token this process saw last; a different one means Redis forgot

    # Every call raises `RedisUnavailable` when Redis is away: watches cannot work on local state.

    # Watches ----------------------------------------------------------------------------------

    def _watch(self, fields: dict[Any, Any]) -> Watch | None:
        row = {_text(k): _text(v) for k, v in fields.items()}
        if not row:
            return None
        return watch_from_row(row)

    def start_watch(
        self, *, channel: str, machine_id: str, device_name: str, filter_text: str, user: str, expires_at: datetime,
        now: datetime,
    ) -> tuple[Watch, bool]:  # fmt: skip
        keys = [
            self._key("watch", "seq"),
            self._key("watches", "live"),
            self._key("watch", "live", channel, machine_id),
        ]
        args = [
            channel,
            machine_id,
            device_name,
            filter_text,
            user,
            iso_time(now),
            iso_time(expires_at),
            self._key("watch", ""),
        ]
        watch_id, created = self._shared.run(lambda r: self._start(keys=keys, args=args, client=r))
        watch = self.watch(int(watch_id))
        if watch is None:  # pragma: no cover - the script has just written it
            raise RuntimeError("the watch vanished after it was written")
        return watch, bool(int(created))

    def watch(self, watch_id: int) -> Watch | None:
        return self._watch(self._shared.run(lambda r: r.hgetall(self._key("watch", watch_id))))

    def find_watch(self, channel: str, machine_id: str) -> Watch | None:
        found = self._shared.run(lambda r: r.get(self._key("watch", "live", channel, machine_id)))
        if found is None:
            return None
        watch = self.watch(int(found))
        return watch if watch is not None and watch.status is not WatchStatus.ENDED else None

    def live_watches(self, channel: str | None = None) -> list[Watch]:
        def read(r: Any) -> list[Any]:
            ids = r.zrange(self._key("watches", "live"), 0, -1)
            pipe = r.pipeline(transaction=False)
            for watch_id in ids:
                pipe.hgetall(self._key("watch", _text(watch_id)))
            return list(pipe.execute()) if ids else []

        watches = [w for w in map(self._watch, self._shared.run(read)) if w is not None]
        return sorted(
            (w for w in watches if w.status is not WatchStatus.ENDED and (channel is None or w.channel == channel)),
            key=lambda w: w.id,
        )

    def set_root(self, watch_id: int, ts: str) -> None:
        key = self._key("watch", watch_id)
        self._shared.run(lambda r: self._set_if_exists(keys=[key], args=["root_ts", ts], client=r))

    def set_status(self, watch_id: int, status: WatchStatus, reason: str | None = None) -> None:
        keys = [self._key("watch", watch_id), self._key("watches", "live")]
        args: list[str | int] = [
            watch_id,
            status.value,
            reason or "",
            "1" if reason is not None else "0",
            self._key("watch", "live", ""),
            self._key("state", watch_id),
            self._key("keys", watch_id),
            RETAIN_SECONDS,
        ]
        self._shared.run(lambda r: self._status(keys=keys, args=args, client=r))

    # State and changes ------------------------------------------------------------------------

    def known_state(self, watch_id: int) -> dict[str, AlertState]:
        rows = self._shared.run(lambda r: r.hgetall(self._key("state", watch_id)))
        state: dict[str, AlertState] = {}
        for alert_id, value in rows.items():
            status, assigned_to, last_update = json.loads(value)
            state[_text(alert_id)] = AlertState(status, assigned_to, parse_time(last_update))
        return state

    def record_check(
        self, watch_id: int, state: dict[str, AlertState], changes: list[Change], checked_at: datetime
    ) -> int | None:
        # Everything is serialized before the script runs: a failure here writes nothing.
        args: list[str | int] = [watch_id, iso_time(checked_at), self._key("reply", ""), len(state)]
        for alert_id, s in state.items():
            last = iso_time(s.last_update) if s.last_update is not None else None
            args += [alert_id, json.dumps([s.status, s.assigned_to, last])]
        for change in changes:
            args += [change.key, json.dumps(change.to_json())]
        keys = [
            self._key("watch", watch_id),
            self._key("state", watch_id),
            self._key("keys", watch_id),
            self._key("check", "seq"),
            self._key("pending"),
        ]
        check_id = self._shared.run(lambda r: self._record(keys=keys, args=args, client=r))
        return int(check_id) if check_id is not None else None

    def pending_replies(self) -> list[PendingReply]:
        flat = self._shared.run(
            lambda r: self._pending(keys=[self._key("pending")], args=[self._key("reply", "")], client=r)
        )
        replies: list[PendingReply] = []
        i = 0
        while i < len(flat):
            member, attempted, count = _text(flat[i]), _text(flat[i + 1]), int(flat[i + 2])
            payloads = flat[i + 3 : i + 3 + count]
            i += 3 + count
            watch_id, check_id = member.split(":")
            changes = tuple(Change.from_json(json.loads(p)) for p in payloads)
            replies.append(PendingReply(int(watch_id), int(check_id), changes, parse_time(attempted or None)))
        return replies

    def _mark_reply(self, reply: PendingReply, field: str, value: str) -> None:
        member = reply.reference
        keys = [self._key("reply", member), self._key("reply", member, "meta"), self._key("pending")]
        args: list[str | int] = [member, field, value, RETAIN_SECONDS]
        self._shared.run(lambda r: self._mark(keys=keys, args=args, client=r))

    def mark_attempted(self, reply: PendingReply, at: datetime) -> None:
        self._mark_reply(reply, "attempted_at", iso_time(at))

    def mark_posted(self, reply: PendingReply, ts: str) -> None:
        self._mark_reply(reply, "posted_ts", ts)

    # Metadata and the poller's lease ----------------------------------------------------------

    def lost_data(self) -> bool:
        fresh = uuid.uuid4().hex
        epoch = _text(self._shared.run(lambda r: self._epoch_script(keys=[self._key("epoch")], args=[fresh], client=r)))
        lost = self._epoch is not None and epoch != self._epoch
        self._epoch = epoch
        return lost

    def get_meta(self, key: str) -> str | None:
        value = self._shared.run(lambda r: r.hget(self._key("meta"), key))
        return _text(value) if value is not None else None

    def set_meta(self, key: str, value: str) -> None:
        self._shared.run(lambda r: r.hset(self._key("meta"), key, value))

    def try_lease(self, holder: str, now: float, ttl: float) -> bool:
        """Hold (or renew) the poller lease; another holder's lease counts until it expires (caller's clock)."""
        args = [holder, repr(float(now)), repr(float(now + ttl))]
        return bool(self._shared.run(lambda r: self._lease(keys=[self._key("lease")], args=args, client=r)))

    def release_lease(self, holder: str) -> None:
        self._shared.run(lambda r: self._release(keys=[self._key("lease")], args=[holder], client=r))

    def lease_holder(self) -> str | None:
        value = self._shared.run(lambda r: r.hget(self._key("lease"), "holder"))
        return _text(value) if value is not None else None

    def close(self) -> None:
        """The connection belongs to the process's `RedisConnection`, closed with the runtime."""
