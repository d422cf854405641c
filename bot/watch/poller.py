"""The watch poller: one delta call per interval for every watched device, changes posted exactly once.

Each cycle (run by whichever process holds the store's lease):
1. deliver replies left pending by an earlier cycle (or a crash), checking Slack first for one that may
   already have been posted;
2. ask Defender once for every alert updated since the watermark (minus an overlap), at background
   priority, and compare each watched device's alerts with the state remembered. The watermark is Defender's
   own time (the newest `lastUpdateTime` seen), never this host's clock, and the overlap is generous: an alert
   that becomes visible minutes after its update (ingestion lag), or a clock that runs ahead, is still seen,
   and an update seen twice is reported once (its change key is recorded once);
3. record state and changes atomically, feed the alert cache, refresh root cards;
4. end expired watches (after their last check), with a final reply; deliver.
When the budget is tight the interval stretches and the root cards say so, rather than failing. When the store
has lost its data (Redis emptied), the watches this process checked are restored first (`bot.watch.memory`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.alerts.service import AlertService
from bot.alerts.source import AlertSource
from bot.defender.errors import AuthError, DefenderError, Throttled
from bot.defender.limits import BudgetExhausted, Priority
from bot.defender.models import Alert
from bot.state.watches import Change, ChangeKind, PendingReply, Watch, WatchStatus, WatchStore
from bot.watch.changes import compare
from bot.watch.memory import WatchMemory
from bot.watch.terms import watch_filters

log = logging.getLogger(__name__)

# The newest lastUpdateTime the delta poll has seen (Defender's clock), kept in the store so it survives restarts.
# Not "watermark": earlier versions kept this host's clock under that name.
WATERMARK = "defender-watermark"
OVERLAP = timedelta(minutes=15)  # ingestion lag and clock skew: re-read this much before the watermark
SKEW_WARNING = timedelta(minutes=1)
DELTA_TOP = 10_000
MAX_STRETCH = 16
ROOT_REFRESH = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Delivered:
    ts: str | None = None  # set when posted
    pause_reason: str | None = None  # set when Slack will not take posts for this watch's channel


class DeliveryUnknown(Exception):
    """Slack could not say (for now) whether an earlier post reached the thread: ask again later."""


class Publisher(Protocol):
    """How follow-ups reach people (Slack in production)."""

    def post_reply(self, watch: Watch, reply: PendingReply) -> Delivered:
        """Post the reply in the watch's thread; `Delivered()` means try again later."""
        ...

    def find_reply(self, watch: Watch, reply: PendingReply) -> str | None:
        """The ts of this reply if an earlier attempt did reach the thread, None if it did not.

        Raises `DeliveryUnknown` when the thread cannot be read right now: posting then could duplicate.
        """
        ...

    def update_root(self, watch: Watch, note: str | None) -> None:
        """Redraw the watch's root card: current counts, last check, `note` about slowed checks."""
        ...


@dataclass
class CycleReport:
    ran: bool = False
    defender_calls: int = 0
    changes: int = 0
    posted: int = 0
    pending: int = 0
    note: str | None = None
    ended: list[int] = field(default_factory=list)


def _slow_reason(exc: Exception) -> str:
    """Why checks slowed down, truthfully: the bot's own budget, Defender's throttle, or Defender failing."""
    if isinstance(exc, BudgetExhausted):
        return "Defender's call budget is tight"
    if isinstance(exc, Throttled):
        return "Defender is throttling the bot"
    if isinstance(exc, AuthError):
        return "the bot cannot sign in to Defender"
    return "Defender is not answering properly"


class Poller:
    def __init__(
        self,
        store: WatchStore,
        service: AlertService,
        client: AlertSource,
        publisher: Publisher,
        *,
        interval: float = 60.0,
        clock: Callable[[], float] = time.time,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        holder: str | None = None,
        lease_ttl: float | None = None,
    ) -> None:
        self._store = store
        self._service = service
        self._client = client
        self._publisher = publisher
        self.base_interval = interval
        self._stretch = 1
        self._clock = clock
        self._now = now
        self._holder = holder or f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        # None: 2.5 intervals (one process or one SQLite file). Several processes on Redis pass 1.5 base intervals:
        # the holder renews every half interval, so a dead holder is replaced within two intervals.
        self._lease_ttl = lease_ttl
        self._roots_drawn: dict[int, datetime] = {}
        self._note: str | None = None
        self._cycle = threading.Lock()  # one cycle or delivery at a time in this process
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The type of the exception that ended the last cycle (a store that cannot be written, Redis away),
        # None after a cycle that ran: `/healthz` reads it rather than writing to the store on every probe.
        self.failing: str | None = None
        self._skew_logged = False
        self._memory = WatchMemory()
        self._watermark: str | None = None  # the last one written, to put back after the store lost it
        # Set when the store was found to have lost its data; `/healthz` reports it until the process restarts.
        self.state_lost: str | None = None

    @property
    def interval(self) -> float:
        """The current interval: the configured one, stretched while the budget is tight."""
        return self.base_interval * self._stretch

    def run_once(self, *, check: bool = True) -> CycleReport:
        """One cycle; with `check=False` only pending replies are delivered (after an unwatch, say)."""
        report = CycleReport()
        with self._cycle:
            now = self._now()
            # Before the lease: a flush took the lease too, and another process may take it before this one,
            # which checked last and so is the one that remembers the watches.
            if self._store.lost_data():
                self._recover(now)
            if not self._store.try_lease(self._holder, self._clock(), ttl=self._lease_ttl or self.interval * 2.5):
                self._memory.clear()  # the holder's memory is the current one; this one would go stale
                return report  # another process polls this store
            report.ran = True
            self._deliver(report)
            if check:
                watches = self._store.live_watches()
                if watches:  # expired ones too: a change made before the end is reported before "watch ended"
                    self._check(watches, now, report)
                self._end_expired(watches, now, report)
                self._deliver(report)
            pending = self._store.pending_replies()
            self._memory.pending(pending)
            report.pending = len(pending)
            report.note = self._note
        return report

    def _recover(self, now: datetime) -> None:
        """The store lost its data: restore the watches this process checked, say so in their threads and logs."""
        restored = self._memory.restore(self._store, now)
        if self._watermark is not None and self._store.get_meta(WATERMARK) is None:
            self._store.set_meta(WATERMARK, self._watermark)
        self._roots_drawn.clear()
        self.state_lost = f"the watch store lost its data at {now:%Y-%m-%d %H:%M} UTC; {len(restored)} restored"
        log.warning(
            "the watch store lost its data (Redis emptied, or restarted without persistence): restored %d "
            "watch(es) from this process's last check; any started since then are gone",
            len(restored),
        )

    # Checking ---------------------------------------------------------------------------------

    def _end_expired(self, watches: list[Watch], now: datetime, report: CycleReport) -> None:
        for watch in watches:
            if watch.expires_at <= now:
                self.end(watch, "expired", now)
                report.ended.append(watch.id)

    def end(self, watch: Watch, reason: str, now: datetime, by: str | None = None) -> None:
        """End a watch with a final reply in its thread (posted through the same exactly-once path)."""
        change = Change(ChangeKind.ENDED, alert_id="-", old=by, new=reason, at=now.isoformat())
        self._store.record_check(watch.id, {}, [change], now)
        self._store.set_status(watch.id, WatchStatus.ENDED)
        self._memory.forget(watch.id)
        self._draw_root(self._store.watch(watch.id) or watch, now)  # back to a plain card with a Watch button

    def _check(self, watches: list[Watch], now: datetime, report: CycleReport) -> None:
        stored = self._store.get_meta(WATERMARK)
        self._watermark = stored or self._watermark
        watermark = datetime.fromisoformat(stored) if stored else None
        # Until Defender has reported an update (or after the store lost it), this host's clock is all there is.
        since = (watermark or now - timedelta(seconds=self.interval)) - OVERLAP
        try:
            updated = self._client.list_alerts_updated_since(since, top=DELTA_TOP, priority=Priority.BACKGROUND)
            report.defender_calls += 1
            by_device = self._by_device(updated, watches, truncated=len(updated) >= DELTA_TOP, report=report)
        except DefenderError as exc:
            self._slow_down(exc, watches)
            return
        self._speed_up(watches)
        self._memory.keep_only({watch.id for watch in watches})
        for watch in watches:
            alerts = by_device.get(watch.machine_id, [])
            known = self._store.known_state(watch.id)
            state, changes = compare(known, alerts, watch_filters(watch))
            check_id = self._store.record_check(watch.id, state, changes, now)
            self._memory.checked(watch, {**known, **state}, now)
            # Even with no updates: the poll covered this device, so its cached list is complete and fresh.
            self._service.merge_updates(watch.machine_id, alerts, covered_since=since)
            if check_id is not None:
                report.changes += len(changes)
            drawn = self._roots_drawn.get(watch.id)
            if check_id is not None or drawn is None or now - drawn >= ROOT_REFRESH:
                self._draw_root(watch, now)
        newest = self._newest_update(updated, now)
        if newest is not None and (watermark is None or newest > watermark):
            self._watermark = newest.isoformat()
            self._store.set_meta(WATERMARK, self._watermark)

    def _newest_update(self, updated: list[Alert], now: datetime) -> datetime | None:
        """The newest lastUpdateTime in a delta answer; one that is ahead of this host's clock is logged once."""
        newest = max((alert.last_update for alert in updated if alert.last_update is not None), default=None)
        if newest is not None and newest > now + SKEW_WARNING and not self._skew_logged:
            self._skew_logged = True  # once per process: the figure hardly changes from poll to poll
            log.warning(
                "Defender reports an alert updated %.0f s ahead of this host's clock: the clock is behind by at "
                "least that much (the watch poll follows Defender's time, so nothing is missed)",
                (newest - now).total_seconds(),
            )
        return newest

    def _by_device(
        self, updated: list[Alert], watches: list[Watch], *, truncated: bool, report: CycleReport
    ) -> dict[str, list[Alert]]:
        by_device: dict[str, list[Alert]] = defaultdict(list)
        for alert in updated:
            for machine_id in alert.machine_ids:  # a Graph alert can concern several devices
                by_device[machine_id].append(alert)
        if truncated:
            # More updates than one answer holds: ask each watched device directly instead.
            log.warning("delta poll hit %d alerts; checking watched devices one by one", DELTA_TOP)
            for machine_id in {w.machine_id for w in watches}:
                result = self._service.device_alerts(machine_id, priority=Priority.BACKGROUND, refresh=True)
                by_device[machine_id] = list(result.alerts)
                report.defender_calls += 1
        return by_device

    def _draw_root(self, watch: Watch, now: datetime) -> None:
        """Redraw the watch's root card; the publisher also posts it when a crash left the watch without one."""
        self._roots_drawn[watch.id] = now
        try:
            self._publisher.update_root(watch, self._note)
        except Exception:  # a card that cannot be redrawn must not stop the follow-ups
            log.exception("could not redraw the root card of watch %d", watch.id)

    def _slow_down(self, exc: Exception, watches: list[Watch]) -> None:
        self._stretch = min(self._stretch * 2, MAX_STRETCH)
        minutes = max(1, round(self.interval / 60))
        note = f"Checks slowed to every {minutes} min: {_slow_reason(exc)}."
        changed, self._note = note != self._note, note
        log.warning("watch poll skipped (%s); next in %.0f s", type(exc).__name__, self.interval)
        now = self._now()
        for watch in watches:
            # Redrawing a card may cost a Defender call for its counts: only when the note is news to it.
            if changed or watch.id not in self._roots_drawn:
                self._draw_root(watch, now)

    def _speed_up(self, watches: list[Watch]) -> None:
        if self._stretch == 1:
            return
        self._stretch, self._note = 1, None
        self._roots_drawn.clear()  # redraw every root without the note

    # Delivering -------------------------------------------------------------------------------

    def _deliver(self, report: CycleReport) -> None:
        for reply in self._store.pending_replies():
            watch = self._store.watch(reply.watch_id)
            if watch is None or watch.status is WatchStatus.PAUSED or watch.root_ts is None:
                continue  # kept pending: posted once the watch is resumed
            if watch.status is WatchStatus.ENDED and watch.pause_reason is not None:
                continue  # Slack refused this ended watch's thread; nothing can resume it, so do not retry
            try:
                ts = self._publisher.find_reply(watch, reply) if reply.attempted_at is not None else None
            except DeliveryUnknown:
                return  # keep order; the next cycle asks Slack again
            if ts is None:
                self._store.mark_attempted(reply, self._now())
                delivered = self._publisher.post_reply(watch, reply)
                if delivered.pause_reason is not None:
                    # An ended watch stays ended: pausing it would bring it back to life (checked, listed).
                    status = WatchStatus.ENDED if watch.status is WatchStatus.ENDED else WatchStatus.PAUSED
                    self._store.set_status(watch.id, status, delivered.pause_reason)
                    continue
                if delivered.ts is None:
                    return  # Slack is failing: keep order, try again next cycle
                ts = delivered.ts
            self._store.mark_posted(reply, ts)
            report.posted += 1

    # Running ----------------------------------------------------------------------------------

    def deliver_soon(self) -> None:
        """Post pending replies now rather than at the next check (the background thread does it)."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="watch-poller")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self._store.release_lease(self._holder)
        except Exception as exc:  # a store that is away (Redis down): the lease expires by itself
            log.warning("could not release the poller lease (%s); it expires by itself", type(exc).__name__)

    def _run(self) -> None:
        """Check every interval, deliver when woken in between; a failing cycle is logged, the next one runs.

        Every half base interval the lease is renewed (or tried) and pending replies delivered, so another
        process's `unwatch` is posted soon and a holder that died is replaced quickly: whoever takes the
        lease over between its checks checks at once.
        """
        next_check = 0.0
        held = False
        while not self._stop.is_set():
            due = self._clock() >= next_check
            try:
                ran = self.run_once(check=due).ran
                self.failing = None
            except Exception as exc:  # a store that stays away is logged once in full
                if type(exc).__name__ != self.failing:
                    log.exception("watch poll failed")
                else:
                    log.warning("watch poll failed again: %s", type(exc).__name__)
                self.failing, ran = type(exc).__name__, False
            if ran and not held and not due:
                log.info("watch poller %s took over the lease; checking now", self._holder)
                held, next_check = True, 0.0
                continue
            held = ran
            if due:
                next_check = self._clock() + self.interval
            self._wake.wait(min(max(0.0, next_check - self._clock()), self.base_interval / 2))
            self._wake.clear()
