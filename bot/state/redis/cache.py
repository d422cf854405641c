"""The alert service's cache in Redis: device alert lists, machine details and hostname → id mappings.

Values are compact (`bot/shared/codec.py`: positional JSON arrays, zlib) and expire with the same TTLs as
the process-local caches in front of them: alert lists after `max(ttl, max_stale)` (their age decides
whether they are fresh or only good as stale-if-error data), details and names after an hour. Any Redis
failure reads as a miss and writes are skipped: the process keeps answering from its own cache.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from bot.defender.models import Alert, Machine
from bot.state.redis.codec import CodecError, Packer
from bot.state.redis.connection import RedisConnection, RedisUnavailable
from bot.state.redis.flight import ClusterFlight

log = logging.getLogger(__name__)

_T = TypeVar("_T")

NAME_TTL = 3600.0
_ALERTS = Packer(Alert)
_MACHINES = Packer(Machine)


class RedisSharedCache:
    """A `SharedCache` on Redis, with the cluster-wide single flight."""

    def __init__(self, shared: RedisConnection, *, alerts_ttl: float, name_ttl: float = NAME_TTL) -> None:
        self._shared = shared
        self._alerts_ttl_ms = max(1, int(alerts_ttl * 1000))
        self._name_ttl_ms = max(1, int(name_ttl * 1000))
        self.flight = ClusterFlight(shared)

    def _get(self, key: str) -> bytes | None:
        try:
            value = self._shared.run(lambda r: r.get(key))
        except RedisUnavailable:
            return None
        return value if isinstance(value, bytes) else None

    def _put(self, key: str, value: bytes, ttl_ms: int) -> None:
        with contextlib.suppress(RedisUnavailable):
            self._shared.run(lambda r: r.set(key, value, px=ttl_ms))

    # Alert lists ------------------------------------------------------------------------------

    def get_alerts(self, machine_id: str) -> tuple[tuple[Alert, ...], datetime] | None:
        data = self._get(self._shared.key("alerts", machine_id))
        if data is None:
            return None
        try:
            alerts, stamp = _ALERTS.unpack(data)
            return tuple(a for a in alerts if a is not None), datetime.fromisoformat(stamp)
        except (CodecError, ValueError) as exc:
            log.info("ignored a cached alert list for %s: %s", machine_id, exc)
            return None

    def put_alerts(self, machine_id: str, alerts: tuple[Alert, ...], fetched_at: datetime) -> None:
        data = _ALERTS.pack(list(alerts), fetched_at.isoformat())
        self._put(self._shared.key("alerts", machine_id), data, self._alerts_ttl_ms)

    # Machines and names -----------------------------------------------------------------------

    def get_machine(self, machine_id: str) -> tuple[bool, Machine | None]:
        data = self._get(self._shared.key("machine", machine_id))
        if data is None:
            return False, None
        try:
            [machine], _ = _MACHINES.unpack(data)
        except (CodecError, ValueError) as exc:
            log.info("ignored cached details of %s: %s", machine_id, exc)
            return False, None
        return True, machine

    def put_machine(self, machine_id: str, machine: Machine | None) -> None:
        self._put(self._shared.key("machine", machine_id), _MACHINES.pack([machine]), self._name_ttl_ms)

    def get_name(self, name: str) -> str | None:
        data = self._get(self._shared.key("name", name))
        return data.decode() if data is not None else None

    def put_name(self, name: str, machine_id: str) -> None:
        self._put(self._shared.key("name", name), machine_id.encode(), self._name_ttl_ms)

    # Single flight ----------------------------------------------------------------------------

    def single_flight(self, key: str, work: Callable[[], _T], landed: Callable[[], _T | None]) -> tuple[_T, bool]:
        return self.flight.run(key, work, landed)
