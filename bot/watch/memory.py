"""What the poller remembers of the watches it checks, to bring them back when the store loses its data.

Redis without persistence forgets everything when it restarts, and FLUSHDB empties it: the watches, their
alerts' last-seen state, the replies not yet posted and the watermark vanish at once, and nothing left in
Redis can tell. So the process that checks (the lease holder) remembers what it last checked, and the store
says when its data went away (`WatchStore.lost_data`). Each remembered watch that is gone is then created
again, with its root card, the state of its last check and its unposted replies, and its thread gets a note
saying what happened, posted like any follow-up. A watch started after the last check, or one that only a
process that has since stopped knew, cannot come back: the note and `/healthz` say that the data was lost.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime

from bot.state.watches import AlertState, Change, ChangeKind, PendingReply, Watch, WatchStatus, WatchStore, iso_time


@dataclass(frozen=True, slots=True)
class Remembered:
    watch: Watch
    state: dict[str, AlertState]  # every alert's state after the last check


def _still_there(store: WatchStore, watch: Watch) -> bool:
    """The same watch is in the store, live or ended since (after a loss, a new watch may have the same id)."""
    found = store.watch(watch.id)
    if found is None:
        return False
    return (found.channel, found.machine_id, found.created_at) == (watch.channel, watch.machine_id, watch.created_at)


class WatchMemory:
    """The live watches as of the last check, with their state and unposted replies; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: dict[int, Remembered] = {}
        self._pending: list[PendingReply] = []

    def clear(self) -> None:
        with self._lock:
            self._watches, self._pending = {}, []

    def keep_only(self, watch_ids: set[int]) -> None:
        """Forget watches no longer live (ended here or by another process)."""
        with self._lock:
            self._watches = {i: r for i, r in self._watches.items() if i in watch_ids}

    def checked(self, watch: Watch, state: dict[str, AlertState], at: datetime) -> None:
        with self._lock:
            self._watches[watch.id] = Remembered(replace(watch, last_checked_at=at), state)

    def forget(self, watch_id: int) -> None:
        with self._lock:
            self._watches.pop(watch_id, None)

    def pending(self, replies: list[PendingReply]) -> None:
        with self._lock:
            self._pending = list(replies)

    def restore(self, store: WatchStore, now: datetime) -> list[Watch]:
        """Create again each remembered watch the store has lost; the watches as they now are."""
        with self._lock:
            remembered, pending = list(self._watches.values()), list(self._pending)
        restored = []
        for old in remembered:
            if _still_there(store, old.watch):
                continue
            watch = self._restore(store, old, [r for r in pending if r.watch_id == old.watch.id], now)
            with self._lock:
                self._watches.pop(old.watch.id, None)
                self._watches[watch.id] = Remembered(watch, old.state)
            restored.append(watch)
        return restored

    @staticmethod
    def _restore(store: WatchStore, old: Remembered, pending: list[PendingReply], now: datetime) -> Watch:
        w = old.watch
        watch, created = store.start_watch(
            channel=w.channel,
            machine_id=w.machine_id,
            device_name=w.device_name,
            filter_text=w.filter_text,
            user=w.created_by,
            expires_at=w.expires_at,
            now=w.created_at,
        )
        if not created:
            return watch  # someone started it again in the meantime: that watch, its card and thread, go on
        if w.root_ts is not None:
            store.set_root(watch.id, w.root_ts)
        # The note goes first; the replies that were waiting follow it, each once more under the new watch.
        note = Change(ChangeKind.RESTORED, alert_id="-", old=iso_time(w.last_checked_at), at=iso_time(now))
        store.record_check(watch.id, old.state, [note], now)
        for reply in pending:
            store.record_check(watch.id, {}, list(reply.changes), now)
        if w.status is WatchStatus.PAUSED:
            store.set_status(watch.id, WatchStatus.PAUSED, w.pause_reason)
        return store.watch(watch.id) or watch
