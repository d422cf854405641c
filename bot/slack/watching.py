"""Watches in Slack: starting and stopping them from commands and buttons, and posting what the poller finds.

`SlackWatches` is also the poller's `Publisher`: follow-ups go in the root card's thread with the
reply's reference in the message metadata, so a post that reached Slack just before a crash is found
again instead of being posted twice. Slack lists a public channel's messages only to members (posting
with `chat:write.public` does not make the bot one), so a watch joins its channel when it starts, and a
lookup refused with `not_in_channel` (a watch started before the bot joined channels) joins and asks again.
A private channel cannot be joined: a watch there needs the bot invited first, and says so.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.access.audit import OK, Outcome, Result
from bot.access.policy import Refusal, Rule
from bot.alerts.problems import explain
from bot.alerts.query import AlertFilters, DeviceQuery
from bot.alerts.result import DeviceAlerts
from bot.alerts.scope import EVERY_DEVICE, DeviceScope
from bot.alerts.service import AlertService
from bot.defender.errors import DefenderError
from bot.defender.limits import Priority
from bot.slack import cards
from bot.slack.blockkit import Message
from bot.slack.errors import SlackErrorKind, classify, pause_reason
from bot.slack.poster import Delivery, NotInChannel, Poster, ThreadUnreadable
from bot.slack.replies import Answer, problem_outcome
from bot.slack.watch_cards import followup_card, watch_started_card, watches_card
from bot.state.watches import PendingReply, Watch, WatchStatus, WatchStore
from bot.telemetry import logs
from bot.telemetry.metrics import FOLLOWUPS_POSTED
from bot.watch.changes import baseline
from bot.watch.poller import Delivered, DeliveryUnknown, Poller
from bot.watch.terms import watch_filters

log = logging.getLogger(__name__)

# Whether a channel and person may (still) see devices: the access policy, as the gate applies it.
AccessCheck = Callable[[str, str], Refusal | DeviceScope]


class SlackWatches:
    def __init__(
        self,
        store: WatchStore,
        service: AlertService,
        poster: Poster,
        card_context: Callable[[], cards.CardContext],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        access: AccessCheck = lambda channel, user: EVERY_DEVICE,
    ) -> None:
        self._store = store
        self._access = access
        self._service = service
        self._poster = poster
        self._card_context = card_context
        self._now = now
        self.poller: Poller | None = None  # set once the poller exists; ending a watch goes through it
        # Two Watch presses at once must not post two root cards for one watch.
        self._starting = threading.Lock()

    # Commands ---------------------------------------------------------------------------------

    def start(
        self, channel: str, user: str, query: DeviceQuery, duration: timedelta, scope: DeviceScope = EVERY_DEVICE
    ) -> Answer:
        """Start (or extend) a watch; post or redraw its root card. Returns the note for the person who asked."""
        with self._starting:
            return self._start(channel, user, query, duration, scope)

    def _start(self, channel: str, user: str, query: DeviceQuery, duration: timedelta, scope: DeviceScope) -> Answer:
        refusal = self._join(channel)
        if refusal is not None:
            return Answer(cards.notice(refusal), Outcome(Result.ERROR, query.device.value, reason="slack_not_member"))
        try:
            everything = self._service.device_alerts(query.device, scope=scope)
        except DefenderError as exc:
            problem = explain(exc)
            card = cards.problem_card(problem, query.device.value, reference=logs.correlation_id())
            return Answer(card, problem_outcome(problem, query.device.value))
        done = Outcome(Result.OK, everything.machine_id, from_cache=everything.from_cache)
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
            delivery = self._place_root(watch, root)
            if not delivery.ok or not delivery.ts:
                self._store.set_status(watch.id, WatchStatus.ENDED)
                reason = pause_reason(delivery.error)
                failed = Outcome(Result.ERROR, everything.machine_id, reason="slack_post_failed")
                return Answer(cards.notice(f"Could not post the watch card here: {reason}."), failed)
            watch = self._store.watch(watch.id) or watch
        else:
            self._poster.update(channel, watch.root_ts, root)
        started = self._poster.post(channel, watch_started_card(watch, user), thread_ts=watch.root_ts)
        if classify(started.error) is SlackErrorKind.PAUSING:  # e.g. resumed before the bot was invited back
            reason = pause_reason(started.error)
            self._store.set_status(watch.id, WatchStatus.PAUSED, reason)
            return Answer(cards.notice(f"The watch on {everything.display_name} is paused: {reason}."), done)
        until = watch.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        note = f"Watching {everything.display_name} until {until}; changes appear in the card's thread."
        return Answer(cards.notice(note), done)

    def _join(self, channel: str) -> str | None:
        """Join the channel so its threads can be read back; why a watch cannot start here, or None."""
        joined = self._poster.join(channel)
        if joined.ok or joined.error == "method_not_supported_for_channel_type":
            return None  # joined, or a DM or private channel the bot is already in
        if joined.error == "channel_not_found":
            return (
                "Cannot watch here: this is a private channel the bot is not in. Invite it "
                "(`/invite @device-alerts`), then start the watch again."
            )
        if classify(joined.error) is SlackErrorKind.PAUSING:
            return f"Cannot watch here: {pause_reason(joined.error)}."
        # Missing channels:join (an app installed before it was asked for), or Slack failing now: the watch
        # works; a lookup after a crash joins again, or, failing that, may post a follow-up twice.
        log.warning("could not join %s (%s): follow-ups there are checked after a crash only if it can", channel,
                    joined.error)  # fmt: skip
        return None

    def stop(self, channel: str, user: str, query: DeviceQuery) -> Answer:
        watch = self._find(channel, query)
        if watch is None or self.poller is None:
            missing = Outcome(Result.NOT_FOUND, query.device.value, reason="no_watch")
            return Answer(cards.notice(f"No watch on {query.device.value} in this channel."), missing)
        self.poller.end(watch, "stopped", self._now(), by=user)
        self.poller.deliver_soon()
        return Answer(cards.notice(f"Stopped watching {watch.device_name}."), Outcome(Result.OK, watch.machine_id))

    def root_card_for(self, channel: str, message_ts: str, scope: DeviceScope = EVERY_DEVICE) -> Answer | None:
        """A fresh root card when `message_ts` is a live watch's root (Refresh must keep the watch line)."""
        for watch in self._store.live_watches(channel):
            if watch.root_ts == message_ts:
                try:
                    result = self._service.device_alerts(
                        watch.machine_id, watch_filters(watch), refresh=True, scope=scope
                    )
                except DefenderError:
                    return None  # the plain lookup path explains the problem
                card = self._root_card(watch, result, watch_filters(watch), None)
                return Answer(card, Outcome(Result.OK, watch.machine_id, from_cache=result.from_cache))
        return None

    def list(self, channel: str) -> Answer:
        return Answer(watches_card(self._store.live_watches(channel)), OK)

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
        lost = self._access_lost(watch)
        if lost is not None:
            return Delivered(pause_reason=lost) if lost else Delivered()
        message = followup_card(watch.device_name, reply.changes, self._card_context())
        delivery = self._poster.post(watch.channel, message, thread_ts=watch.root_ts, reference=reply.reference)
        if delivery.ok and delivery.ts:
            FOLLOWUPS_POSTED.inc()
            return Delivered(ts=delivery.ts)
        if classify(delivery.error) is SlackErrorKind.PAUSING:
            return Delivered(pause_reason=pause_reason(delivery.error))
        return Delivered()

    def find_reply(self, watch: Watch, reply: PendingReply) -> str | None:
        if watch.root_ts is None:
            return None
        # Only replies posted since the first attempt can be it (a minute's margin for clock skew).
        oldest = reply.attempted_at.timestamp() - 60 if reply.attempted_at else 0.0
        try:
            return self._find_reference(watch.channel, watch.root_ts, reply.reference, oldest)
        except ThreadUnreadable as exc:
            raise DeliveryUnknown(str(exc)) from None

    def _find_reference(self, channel: str, thread_ts: str | None, reference: str, oldest: float) -> str | None:
        """`Poster.find_reference`, joining the channel first when Slack will not list it to a non-member."""
        try:
            return self._poster.find_reference(channel, thread_ts, reference, oldest=oldest)
        except NotInChannel:
            joined = self._poster.join(channel)
        if joined.ok:
            try:
                return self._poster.find_reference(channel, thread_ts, reference, oldest=oldest)
            except NotInChannel:
                joined = Delivery(error="not_in_channel")  # removed again in between
        log.warning("cannot read %s to check for an earlier post (%s); posting again", channel, joined.error)
        return None

    def update_root(self, watch: Watch, note: str | None) -> None:
        if watch.root_ts is None and (watch.status is WatchStatus.ENDED or not self._root_attempted(watch)):
            return  # a card is placed here only to finish a post a crash interrupted
        if self._access_lost(watch) is not None:
            return
        try:
            result = self._service.device_alerts(watch.machine_id, watch_filters(watch), priority=Priority.BACKGROUND)
        except DefenderError:
            return  # the card keeps its last state; the next check redraws it
        current = self._store.watch(watch.id) or watch
        card = self._root_card(current, result, watch_filters(watch), note)
        if current.root_ts is None:
            self._place_root(current, card)
        else:
            self._poster.update(watch.channel, current.root_ts, card)

    def _root_attempted(self, watch: Watch) -> bool:
        return self._store.get_meta(_root_attempt_key(watch)) is not None

    def _place_root(self, watch: Watch, card: Message) -> Delivery:
        """Post a watch's root card once, even across a crash between posting it and saving its ts.

        The attempt is recorded before the post and the card carries a reference in its metadata; a later
        attempt first looks for that card in the channel and adopts it instead of posting a second one.
        """
        reference = f"root:{watch.id}:{int(watch.created_at.timestamp())}"
        attempted = self._store.get_meta(_root_attempt_key(watch))
        if attempted is not None:
            try:
                found = self._find_reference(watch.channel, None, reference, float(attempted) - 60)
            except ThreadUnreadable as exc:
                return Delivery(error=str(exc))
            if found is not None:
                log.info("adopted the root card of watch %s posted before a restart", watch.id)
                self._store.set_root(watch.id, found)
                return self._poster.update(watch.channel, found, card)
        self._store.set_meta(_root_attempt_key(watch), str(self._now().timestamp()))
        delivery = self._poster.post(watch.channel, card, reference=reference)
        if delivery.ok and delivery.ts:
            self._store.set_root(watch.id, delivery.ts)
        return delivery

    def _access_lost(self, watch: Watch) -> str | None:
        """Why the policy no longer lets this watch post ("" when that cannot be checked now), or None.

        The policy may have changed since the watch started (a restart with a narrower policy, someone
        leaving a user group): a watch acts for the person who started it, in its channel, every time.
        """
        decision = self._access(watch.channel, watch.created_by)
        if isinstance(decision, Refusal):
            if decision.rule is Rule.MEMBERSHIP:
                return ""  # Slack could not tell right now: hold the follow-ups, ask again next cycle
            return f"the bot's access policy no longer allows it ({decision.rule.value})"
        if decision.everything:
            return None
        try:
            group = self._service.device_group(watch.machine_id)
        except DefenderError:
            return ""
        return None if decision.allows(group) else "the bot's access policy no longer allows it (device_groups)"

    def _root_card(self, watch: Watch, result: DeviceAlerts, filters: AlertFilters, note: str | None) -> Message:
        shown = result if result.filters == filters else self._service.device_alerts(watch.machine_id, filters)
        if watch.status is WatchStatus.ENDED:
            return cards.device_card(shown, self._card_context())
        badge = cards.WatchBadge(watch.created_by, watch.expires_at, watch.last_checked_at, note)
        return cards.device_card(shown, self._card_context(), badge)


def _root_attempt_key(watch: Watch) -> str:
    """Store metadata: when posting the watch's root card was last attempted."""
    return f"root-attempt:{watch.id}"
