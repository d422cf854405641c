"""Watches in Slack: starting and stopping them from commands and buttons, and posting what the poller finds.

`SlackWatches` is also the poller's `Publisher`: follow-ups go in the root card's thread with the
reply's reference in the message metadata, so a post that reached Slack just before a crash is found
again instead of being posted twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.alerts.budget import BudgetExhausted, Priority
from bot.alerts.problems import explain
from bot.alerts.query import AlertFilters, DeviceQuery
from bot.alerts.result import DeviceAlerts
from bot.alerts.service import AlertService
from bot.defender.errors import DefenderError
from bot.slack import cards
from bot.slack.blockkit import Message
from bot.slack.outbox import Outbox, ThreadUnreadable
from bot.slack.watch_cards import followup_card, watch_started_card, watches_card
from bot.watch.changes import baseline
from bot.watch.model import PendingReply, Watch, WatchStatus
from bot.watch.poller import Delivered, DeliveryUnknown, Poller
from bot.watch.store import WatchStore

log = logging.getLogger(__name__)

# Slack errors after which posting in that channel will not work until someone acts.
PAUSING_ERRORS = frozenset({"channel_not_found", "not_in_channel", "is_archived", "restricted_action"})
_PAUSE_REASONS = {
    "channel_not_found": "the channel is gone or the bot cannot see it",
    "not_in_channel": "the bot is not in the channel: invite it, then start the watch again",
    "is_archived": "the channel is archived",
    "restricted_action": "the workspace does not let the bot post here",
}


class SlackWatches:
    def __init__(
        self,
        store: WatchStore,
        service: AlertService,
        outbox: Outbox,
        card_context: Callable[[], cards.CardContext],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._service = service
        self._outbox = outbox
        self._card_context = card_context
        self._now = now
        self.poller: Poller | None = None  # set once the poller exists; ending a watch goes through it
        # Two Watch presses at once must not post two root cards for one watch.
        self._starting = threading.Lock()

    # Commands ---------------------------------------------------------------------------------

    def start(self, channel: str, user: str, query: DeviceQuery, duration: timedelta) -> Message:
        """Start (or extend) a watch; post or redraw its root card. Returns the note for the person who asked."""
        with self._starting:
            return self._start(channel, user, query, duration)

    def _start(self, channel: str, user: str, query: DeviceQuery, duration: timedelta) -> Message:
        try:
            everything = self._service.device_alerts(query.device)
        except (DefenderError, BudgetExhausted) as exc:
            return cards.problem_card(explain(exc), query.device.value)
        now = self._now()
        watch, created = self._store.start_watch(
            channel=channel,
            machine_id=everything.machine_id,
            device_name=everything.display_name,
            filter_text=query.filters.as_query(),
            user=user,
            expires_at=now + duration,
            now=now,
        )
        if created:
            self._store.record_check(watch.id, baseline(everything.alerts), [], now)
            watch = self._store.watch(watch.id) or watch  # the baseline is its first check: the card says when
        root = self._root_card(watch, everything, query.filters, None)
        if watch.root_ts is None:
            delivery = self._outbox.post(channel, root)
            if not delivery.ok or not delivery.ts:
                self._store.set_status(watch.id, WatchStatus.ENDED)
                reason = _PAUSE_REASONS.get(delivery.error or "", f"Slack answered {delivery.error}")
                return cards.notice(f"Could not post the watch card here: {reason}.")
            self._store.set_root(watch.id, delivery.ts)
            watch = self._store.watch(watch.id) or watch
        else:
            self._outbox.update(channel, watch.root_ts, root)
        started = self._outbox.post(channel, watch_started_card(watch, user), thread_ts=watch.root_ts)
        if started.error in PAUSING_ERRORS:  # e.g. resumed before the bot was invited back: still cannot post
            reason = _PAUSE_REASONS[started.error or ""]
            self._store.set_status(watch.id, WatchStatus.PAUSED, reason)
            return cards.notice(f"The watch on {everything.display_name} is paused: {reason}.")
        until = watch.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        return cards.notice(f"Watching {everything.display_name} until {until}; changes appear in the card's thread.")

    def stop(self, channel: str, user: str, query: DeviceQuery) -> Message:
        watch = self._find(channel, query)
        if watch is None or self.poller is None:
            return cards.notice(f"No watch on {query.device.value} in this channel.")
        self.poller.end(watch, "stopped", self._now(), by=user)
        self.poller.deliver_soon()
        return cards.notice(f"Stopped watching {watch.device_name}.")

    def root_card_for(self, channel: str, message_ts: str) -> Message | None:
        """A fresh root card when `message_ts` is a live watch's root (Refresh must keep the watch line)."""
        for watch in self._store.live_watches(channel):
            if watch.root_ts == message_ts:
                try:
                    result = self._service.device_alerts(watch.machine_id, watch.filters, refresh=True)
                except (DefenderError, BudgetExhausted):
                    return None  # the plain lookup path explains the problem
                return self._root_card(watch, result, watch.filters, None)
        return None

    def list(self, channel: str) -> Message:
        return watches_card(self._store.live_watches(channel))

    def _find(self, channel: str, query: DeviceQuery) -> Watch | None:
        """A live watch in the channel by machine id or by (short) hostname; no Defender call."""
        wanted = query.device.value
        for watch in self._store.live_watches(channel):
            name = watch.device_name.lower()
            if wanted in (watch.machine_id, name) or name.startswith(wanted + "."):
                return watch
        return None

    # Publisher --------------------------------------------------------------------------------

    def post_reply(self, watch: Watch, reply: PendingReply) -> Delivered:
        message = followup_card(watch.device_name, reply.changes, self._card_context())
        delivery = self._outbox.post(watch.channel, message, thread_ts=watch.root_ts, reference=reply.reference)
        if delivery.ok and delivery.ts:
            return Delivered(ts=delivery.ts)
        if delivery.error in PAUSING_ERRORS:
            return Delivered(pause_reason=_PAUSE_REASONS[delivery.error or ""])
        return Delivered()

    def find_reply(self, watch: Watch, reply: PendingReply) -> str | None:
        if watch.root_ts is None:
            return None
        # Only replies posted since the first attempt can be it (a minute's margin for clock skew).
        oldest = reply.attempted_at.timestamp() - 60 if reply.attempted_at else 0.0
        try:
            return self._outbox.find_reference(watch.channel, watch.root_ts, reply.reference, oldest=oldest)
        except ThreadUnreadable as exc:
            raise DeliveryUnknown(str(exc)) from None

    def update_root(self, watch: Watch, note: str | None) -> None:
        if watch.root_ts is None:
            return
        try:
            result = self._service.device_alerts(watch.machine_id, watch.filters, priority=Priority.BACKGROUND)
        except (DefenderError, BudgetExhausted):
            return  # the card keeps its last state; the next check redraws it
        current = self._store.watch(watch.id) or watch
        self._outbox.update(watch.channel, watch.root_ts, self._root_card(current, result, watch.filters, note))

    def _root_card(self, watch: Watch, result: DeviceAlerts, filters: AlertFilters, note: str | None) -> Message:
        shown = result if result.filters == filters else self._service.device_alerts(watch.machine_id, filters)
        if watch.status is WatchStatus.ENDED:
            return cards.device_card(shown, self._card_context())
        badge = cards.WatchBadge(watch.created_by, watch.expires_at, watch.last_checked_at, note)
        return cards.device_card(shown, self._card_context(), badge)
