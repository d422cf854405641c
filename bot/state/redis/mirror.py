"""The Graph alert mirror in Redis: one mirror for every process, synced by one of them at a time.

Keys (under the prefix): `mirror:alert` (hash: alert id → packed alert), `mirror:updated` (sorted set: alert id
by last update, for deltas and eviction), `mirror:device:{machine id}` (set of alert ids), `mirror:machines`
(hash: machine id → packed device), `mirror:names` (hash: lowercase hostname → machine id), `mirror:meta`
(hash: watermark, synced_at). A merge is one pipeline (MULTI/EXEC), so a reader never sees half of it.

One process syncs at a time: the sync holds a `ClusterFlight` lock, short (`LOCK_TTL`, 3 s) and renewed while the
sync runs, however many pages a backfill reads; a process killed mid-sync stops renewing, so the others sync
again within 3 s (a 180 s lock without renewal held their syncs, and the lookups waiting on them, for 3 minutes).

While Redis is away every call falls back to this process's own `MemoryMirror`, which every merge also feeds,
so lookups go on from the process's latest copy.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from bot.defender.models import Alert, Machine
from bot.state.mirror import MAX_ALERTS, MemoryMirror, updated_at
from bot.state.redis.codec import CodecError, Packer
from bot.state.redis.connection import RedisConnection, RedisUnavailable
from bot.state.redis.flight import LOCK_TTL, ClusterFlight

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_ALERT = Packer(Alert)
_MACHINE = Packer(Machine)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisMirror:
    """A `MirrorStore` shared by every process on the same Redis."""

    def __init__(self, shared: RedisConnection, max_alerts: int = MAX_ALERTS, *, lock_ttl: float = LOCK_TTL) -> None:
        self.max_alerts = max_alerts
        self.local = MemoryMirror(max_alerts)
        self._shared = shared
        self._flight = ClusterFlight(shared, lock_ttl=lock_ttl)

    def _key(self, *parts: str) -> str:
        return self._shared.key("mirror", *parts)

    def merge(self, alerts: Sequence[Alert], devices: Mapping[str, Machine]) -> None:
        self.local.merge(alerts, devices)
        try:
            self._shared.run(lambda r: self._merge(r, alerts, devices))
        except RedisUnavailable:
            log.info("Graph alert mirror: Redis unavailable, kept %d alerts in this process only", len(alerts))

    def _merge(self, r: Any, alerts: Sequence[Alert], devices: Mapping[str, Machine]) -> None:
        kept = dict(zip((a.id for a in alerts), r.zmscore(self._key("updated"), [a.id for a in alerts]), strict=True))
        pipe = r.pipeline(transaction=True)
        for alert in alerts:
            stamp = updated_at(alert).timestamp()
            if kept.get(alert.id) is not None and kept[alert.id] > stamp:
                continue
            pipe.hset(self._key("alert"), alert.id, _ALERT.pack([alert]))
            pipe.zadd(self._key("updated"), {alert.id: stamp})
            for machine_id in alert.machine_ids:
                pipe.sadd(self._key("device", machine_id.lower()), alert.id)
        for machine_id, machine in devices.items():
            pipe.hset(self._key("machines"), machine_id.lower(), _MACHINE.pack([machine]))
            if machine.computer_dns_name:
                pipe.hset(self._key("names"), machine.computer_dns_name.lower(), machine_id.lower())
        pipe.execute()
        self._evict(r)

    def _evict(self, r: Any) -> None:
        excess = int(r.zcard(self._key("updated"))) - self.max_alerts
        if excess <= 0:
            return
        ids = [_text(i) for i in r.zrange(self._key("updated"), 0, excess - 1)]
        pipe = r.pipeline(transaction=True)
        for alert in self._alerts(r, ids):
            for machine_id in alert.machine_ids:
                pipe.srem(self._key("device", machine_id.lower()), alert.id)
        pipe.hdel(self._key("alert"), *ids)
        pipe.zrem(self._key("updated"), *ids)
        pipe.execute()
        log.warning(
            "Graph alert mirror is full (%d alerts): dropped the %d least recently updated", self.max_alerts, excess
        )

    def _alerts(self, r: Any, ids: Sequence[str]) -> list[Alert]:
        found: list[Alert] = []
        for data in r.hmget(self._key("alert"), list(ids)) if ids else []:
            if data is None:
                continue  # evicted since the index was read
            try:
                found.extend(a for a in _ALERT.unpack(data)[0] if a is not None)
            except CodecError:
                continue  # written by another version of the code: the next sync writes it again
        return found

    @staticmethod
    def _machine(data: Any) -> Machine | None:
        if data is None:
            return None
        try:
            return _MACHINE.unpack(data)[0][0]
        except CodecError:
            return None

    def _watermark(self, r: Any) -> datetime | None:
        value = r.hget(self._key("meta"), "watermark")
        return datetime.fromisoformat(_text(value)) if value else None

    # Reads: Redis, or this process's copy while Redis is away ------------------------------

    def _read(self, from_redis: Callable[[Any], _T], locally: Callable[[], _T]) -> _T:
        try:
            return self._shared.run(from_redis)
        except RedisUnavailable:
            return locally()

    def device_alerts(self, machine_id: str) -> list[Alert]:
        return self._read(
            lambda r: self._alerts(r, [_text(i) for i in r.smembers(self._key("device", machine_id.lower()))]),
            lambda: self.local.device_alerts(machine_id),
        )

    def updated_since(self, since: datetime) -> list[Alert]:
        return self._read(
            lambda r: self._alerts(
                r, [_text(i) for i in r.zrangebyscore(self._key("updated"), since.timestamp(), "+inf")]
            ),
            lambda: self.local.updated_since(since),
        )

    def device(self, machine_id: str) -> Machine | None:
        return self._read(
            lambda r: self._machine(r.hget(self._key("machines"), machine_id.lower())),
            lambda: self.local.device(machine_id),
        )

    def device_named(self, hostname: str) -> Machine | None:
        def from_redis(r: Any) -> Machine | None:
            machine_id = r.hget(self._key("names"), hostname.lower())
            return self._machine(r.hget(self._key("machines"), _text(machine_id))) if machine_id else None

        return self._read(from_redis, lambda: self.local.device_named(hostname))

    def devices_named(self, prefix: str) -> list[Machine]:
        def from_redis(r: Any) -> list[Machine]:
            wanted = prefix.lower()
            ids = [_text(mid) for name, mid in r.hscan_iter(self._key("names")) if _text(name).startswith(wanted)]
            found = r.hmget(self._key("machines"), ids) if ids else []
            return [m for m in (self._machine(data) for data in found) if m is not None]

        return self._read(from_redis, lambda: self.local.devices_named(prefix))

    def watermark(self) -> datetime | None:
        return self._read(self._watermark, self.local.watermark)

    def synced_at(self) -> datetime | None:
        def from_redis(r: Any) -> datetime | None:
            value = r.hget(self._key("meta"), "synced_at")
            return datetime.fromisoformat(_text(value)) if value else None

        return self._read(from_redis, self.local.synced_at)

    def mark_synced(self, at: datetime, watermark: datetime | None) -> None:
        self.local.mark_synced(at, watermark)

        def commit(r: Any) -> None:
            known = self._watermark(r)
            fields = {"synced_at": at.isoformat()}
            if watermark is not None and (known is None or watermark > known):
                fields["watermark"] = watermark.isoformat()
            r.hset(self._key("meta"), mapping=fields)

        with contextlib.suppress(RedisUnavailable):  # the other processes then sync themselves
            self._shared.run(commit)

    def alert_count(self) -> int:
        return self._read(lambda r: int(r.zcard(self._key("updated"))), self.local.alert_count)

    def single_flight(self, key: str, work: Callable[[], _T], landed: Callable[[], _T | None]) -> tuple[_T, bool]:
        return self._flight.run(f"mirror:{key}", work, landed)
