"""Device alerts from Microsoft Graph: a mirror of the tenant's recent alerts, indexed by device.

Graph's security API has no "alerts of device X" (the device is inside each alert's evidence, and `$filter`
cannot reach it). So the bot reads the tenant's alerts updated in the last `backfill` once, then only what
changed: one delta call (`lastUpdateDateTime ge watermark - overlap`) at most every `max_age` seconds, shared
by every lookup and by the watch poller. A storm of lookups for many devices costs one call per `max_age`,
not one per device.

The watermark comes from Graph's own data (the newest `lastUpdateDateTime` seen), never from this host's
clock, and the overlap is generous: an alert that becomes visible late, or a clock that runs ahead, loses
nothing, and duplicates are merged by id. Devices are named by the alerts' evidence; a device with no recent
alert, or a name the mirror has not seen, is asked of advanced hunting (`DeviceInfo`).

The alerts are kept in a `MirrorStore` (`bot.state.mirror`): in the process by default, or in Redis, where
every process shares one mirror and one sync at a time (`BOT_STATE_URL=redis://…`). It is bounded (`max_alerts`,
the least recently updated dropped first).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bot.defender.errors import DefenderError, DeviceNotFound
from bot.defender.graph import GraphClient
from bot.defender.limits import Priority
from bot.defender.models import Alert, Machine
from bot.defender.refs import RefKind, parse_device_ref
from bot.defender.updates import AlertUpdate
from bot.state.mirror import MemoryMirror, MirrorStore, updated_at

log = logging.getLogger(__name__)

OVERLAP = timedelta(minutes=15)  # ingestion lag and clock skew: re-read this much before the watermark
MAX_CONTINUATIONS = 20  # reads on after an incomplete answer (50 pages of 1,000 each): 1,000,000 alerts at most
SKEW_WARNING = timedelta(minutes=1)
_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class _Cursor:
    """How far a sync has read: the span it asked for, the oldest creation time read so far, the newest update."""

    started: datetime
    since: datetime
    created_before: datetime | None
    newest: datetime | None


class GraphAlertSource:
    """An `AlertSource` over `GraphClient` and a `MirrorStore`; thread-safe."""

    def __init__(
        self,
        client: GraphClient,
        store: MirrorStore | None = None,
        *,
        backfill: timedelta = timedelta(days=30),
        max_age: float = 5.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self.store: MirrorStore = store or MemoryMirror()
        self._backfill = backfill
        self._max_age = timedelta(seconds=max_age)
        self._now = now
        self._unfinished: _Cursor | None = None  # a sync that failed part of the way (this process's own)
        self._warming: threading.Thread | None = None
        self._closed = False

    def warm_up(self) -> None:
        """Start the first sync in the background (at start-up): a first lookup then finds the mirror synced, or
        joins the sync under way (one sync at a time), instead of paying for the backfill itself."""
        self._warming = threading.Thread(target=self._warm, name="graph-mirror-warm-up", daemon=True)
        self._warming.start()

    def _warm(self) -> None:
        try:
            self.sync(Priority.BACKGROUND)
        except DefenderError as exc:  # the first lookup syncs instead, and says what went wrong
            log.warning("Graph alert mirror: the start-up sync failed (%s); the first lookup tries again", exc)
        except RuntimeError:  # httpx's "client has been closed": a backfill that outlasted `close`'s wait
            if not self._closed:
                raise
            log.info("Graph alert mirror: the start-up sync stopped as the bot closed")

    def close(self) -> None:
        self._closed = True
        if self._warming is not None:
            self._warming.join(timeout=5.0)  # a backfill still running after that stops on the closed client
        self._client.close()

    # AlertSource ----------------------------------------------------------------------------

    def get_device_alerts(self, machine_id: str, *, priority: Priority = Priority.INTERACTIVE) -> list[Alert]:
        self.sync(priority)
        return self.store.device_alerts(machine_id)

    def get_machine(self, id_or_name: str, *, priority: Priority = Priority.INTERACTIVE) -> Machine:
        ref = parse_device_ref(id_or_name)
        self.sync(priority)  # the evidence names most devices: hunting only for the rest
        if ref.kind is RefKind.MACHINE_ID:
            known = self.store.device(ref.value)
            return known if known is not None else self._client.get_device(ref.value, priority=priority)
        # A name is always hunted: a re-imaged device's old record may be the only one the alerts name.
        found = self._client.find_devices(ref.value, priority=priority)
        known = found[0] if found else self.store.device_named(ref.value)  # the most recently seen record
        if known is None:
            raise DeviceNotFound(ref.value)
        return known

    def find_machines(
        self, hostname: str, *, prefix: bool = False, priority: Priority = Priority.INTERACTIVE
    ) -> list[Machine]:
        self.sync(priority)
        found = {m.id: m for m in self._client.find_devices(hostname, prefix=prefix, priority=priority)}
        named = self.store.devices_named(hostname) if prefix else [self.store.device_named(hostname)]
        for machine in named:
            if machine is not None:
                found.setdefault(machine.id, machine)
        return list(found.values())

    def list_alerts_updated_since(
        self, since: datetime, *, top: int = 10_000, priority: Priority = Priority.BACKGROUND
    ) -> list[Alert]:
        """The watch poller's delta: one Graph call per poll (lookups in between share it), answered from the mirror."""
        self.sync(priority, max_age=0.0)
        return self.store.updated_since(since)

    def update_alert(
        self, alert_id: str, update: AlertUpdate, *, priority: Priority = Priority.INTERACTIVE
    ) -> Alert | None:
        """Write through Graph, and keep the written alert in the mirror (the next sync reads it again anyway)."""
        written = self._client.update_alert(alert_id, update, priority=priority)
        if written is not None:
            self.store.merge([written], {})
        return written

    # The mirror -----------------------------------------------------------------------------

    def sync(self, priority: Priority = Priority.INTERACTIVE, *, max_age: float | None = None) -> None:
        """Bring the mirror up to date unless it was synced within `max_age` seconds (one sync at a time)."""
        limit = self._max_age if max_age is None else timedelta(seconds=max_age)
        asked = self._now()

        def landed() -> bool | None:
            synced = self.store.synced_at()
            # Fresh enough, or synced by another caller while this one waited: its answer is as new as ours.
            return True if synced is not None and (asked - synced < limit or synced > asked) else None

        if landed() is None:
            self.store.single_flight("sync", lambda: self._sync(priority), landed)

    def _sync(self, priority: Priority) -> bool:
        cursor = self._unfinished or self._new_cursor()
        self._unfinished = cursor
        for _ in range(MAX_CONTINUATIONS):
            read = self._client.alerts_updated_since(
                cursor.since, created_before=cursor.created_before, priority=priority
            )
            self.store.merge(read.alerts, read.devices)
            seen = [updated_at(alert) for alert in read.alerts] + ([cursor.newest] if cursor.newest else [])
            cursor = replace(cursor, newest=max(seen, default=None))
            if read.complete or not read.alerts:
                break
            # Progress is kept: a failure (the budget, Graph) from here on resumes below the oldest alert read.
            oldest = min(alert.created or _EPOCH for alert in read.alerts)
            cursor = self._unfinished = replace(cursor, created_before=oldest)
        else:
            log.warning(
                "Graph alert mirror: over %d reads since %s; the oldest are left out", MAX_CONTINUATIONS, cursor.since
            )
        self._unfinished = None
        # Only now, with every read done, does the watermark move: a sync that failed half-way is resumed, not skipped.
        self.store.mark_synced(cursor.started, cursor.newest)
        if cursor.newest is not None and cursor.newest > self._now() + SKEW_WARNING:
            log.warning("Graph reports alerts updated %s ahead of this host's clock", cursor.newest - self._now())
        return True

    def _new_cursor(self) -> _Cursor:
        started = self._now()
        watermark = self.store.watermark()
        since = started - self._backfill if watermark is None else watermark - OVERLAP
        return _Cursor(started, since, None, None)
