"""A change made from Slack, told once in the thread of every watch on the device, saying who made it.

The change is recorded like one the poller found (same state, same change key), with the Slack user who made
it: the poller, seeing the same alert later, finds nothing new to report, and if it recorded the change first,
the store keeps that one (a change is reported once per watch, whoever finds it).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from bot.defender.models import Alert
from bot.state.watches import ChangeKind, WatchStore
from bot.watch.changes import compare
from bot.watch.terms import watch_filters


def record_slack_change(store: WatchStore, alert: Alert, user_id: str, now: datetime) -> int:
    """Record the alert's new state and its change for each live watch on its devices; how many got a change."""
    recorded = 0
    for watch in store.live_watches():
        if watch.machine_id not in alert.machine_ids:
            continue
        known = store.known_state(watch.id)
        if alert.id not in known:
            continue  # an alert the watch has not seen yet: the poller reports it as new
        state, changes = compare(known, [alert], watch_filters(watch))
        told = [dataclasses.replace(c, by=user_id) for c in changes if c.kind is not ChangeKind.NEW]
        if store.record_check(watch.id, state, told, watch.last_checked_at or now) is not None:
            recorded += 1
    return recorded
