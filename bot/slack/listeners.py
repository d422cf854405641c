"""Bolt listeners: each parses what arrived, hands slow work to the pool, and acknowledges at once.

The app runs with `process_before_response=True`, so a listener's own code runs on the request thread
and must stay short: parsing and `WorkPool.submit`. Lookups and posts happen on the pool's workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext

from bot.access.audit import Action, AuditLog, Outcome, Result
from bot.access.policy import Requester
from bot.alerts.query import DeviceQuery, QueryError
from bot.alerts.scope import DeviceScope
from bot.config import Visibility
from bot.defender.client import counting_requests
from bot.slack import actions, cards, middleware
from bot.slack.blockkit import Message
from bot.slack.commands import (
    Command,
    Lookup,
    StartWatch,
    StopWatch,
    message_text,
    parse_command,
)
from bot.slack.gate import Denied, Gate
from bot.slack.plans import Plan, action_of, costly, for_asker_only, plan_for
from bot.slack.poster import Poster, in_background
from bot.slack.recovery import RESTARTING, AcceptedWork, requester_of
from bot.slack.replies import BUSY, Answer, Replier
from bot.slack.requester import identify, requester_in, verified_requester
from bot.slack.watching import SlackWatches
from bot.slack.work import WorkPool
from bot.state.dedupe import EventDeduper
from bot.state.redis.connection import RedisUnavailable
from bot.state.watches import StoreFailing
from bot.state.work import AcceptedCommand, Origin
from bot.telemetry import logs
from bot.watch.terms import DEFAULT_DURATION

log = logging.getLogger(__name__)

COMMAND = "/device-alerts"
INVALID_BUTTON = "That button's data is not valid. Run the command again."
WATCHES_UNAVAILABLE = "Watches are unavailable while the shared state store (Redis) is unreachable; lookups still work."


def _report(error: Exception, requester: Requester, where: str) -> str:
    """Log an unexpected error with the ids that locate it; return the reference shown to the person."""
    reference = logs.correlation_id() or logs.begin_request()
    log.error(
        "unhandled error %s in %s (team %s, channel %s, user %s)",
        reference,
        where,
        requester.team_id or None,
        requester.channel_id or None,
        requester.user_id or None,
        exc_info=error,
    )
    return reference


def _oops(reference: str) -> Message:
    return cards.notice(f"Something went wrong on the bot's side (reference {reference}).")


class Listeners:
    def __init__(
        self,
        replier: Replier,
        watches: SlackWatches,
        pool: WorkPool,
        poster: Poster,
        visibility: Visibility,
        gate: Gate,
        audit: AuditLog,
        seal: actions.ButtonSeal,
        accepted: AcceptedWork,
    ) -> None:
        self._replier = replier
        self._watches = watches
        self._pool = pool
        self._poster = poster
        self._in_channel = visibility is Visibility.IN_CHANNEL
        self._gate = gate
        self._audit = audit
        self._seal = seal
        self._accepted = accepted

    def register(self, app: App, deduper: EventDeduper) -> None:
        app.middleware(middleware.correlate)
        app.middleware(middleware.repair_form_body)
        app.middleware(middleware.drop_repeated_events(deduper))
        app.middleware(identify)
        app.command(COMMAND)(self.on_command)
        app.event("app_mention")(self.on_mention)
        app.event("message")(self.on_message)
        app.action(actions.REFRESH)(self.on_refresh)
        app.action(actions.OPEN_DEVICE)(self.on_open_device)
        app.action(actions.WATCH)(self.on_watch)
        app.action(actions.UNWATCH)(self.on_unwatch)
        app.error(self.on_error)

    # Slash command -----------------------------------------------------------------------------

    def on_command(self, ack: Ack, command: dict[str, Any], context: BoltContext) -> None:
        requester, text = requester_in(context), str(command.get("text", ""))
        parsed = parse_command(text)
        admitted = self._admit(requester, parsed)
        if isinstance(admitted, Denied):
            ack(**cards.notice(admitted.message).payload())
            return
        plan = plan_for(parsed, requester, admitted, self._replier, self._watches)
        if plan.at_once:
            ack(**self._answer_now(plan, requester).payload())
            return
        url = str(command["response_url"])
        accepted = self._accepted.accept(requester, text, url)
        submitted = self._command_on_pool(plan, requester, url, accepted)
        if not submitted:  # told the bot is busy: nothing is left to answer
            self._accepted.finish(accepted)
        ack(**cards.notice(plan.note if submitted else BUSY).payload())

    def answer_accepted(self, command: AcceptedCommand) -> bool:
        """Answer a command (slash, mention or DM) another process acknowledged and left, where it was asked;
        access is checked again (fail closed). False when the pool is full: its claim lapses, it is taken again."""
        requester, parsed = requester_of(command), parse_command(command.text)
        admitted = self._admit(requester, parsed)
        if isinstance(admitted, Denied):  # their access changed since: they are told, as they would be now
            if command.origin is Origin.COMMAND:
                self._tell(command.response_url, cards.notice(admitted.message))
            else:
                self._refuse_in_thread(requester, admitted, command.thread_ts)
            self._accepted.finish(command.id)
            return True
        plan = plan_for(parsed, requester, admitted, self._replier, self._watches)
        if command.origin is Origin.COMMAND:
            return self._command_on_pool(plan, requester, command.response_url, command.id)
        return self._message_on_pool(plan, requester, command.origin, command.thread_ts, command.id)

    def _command_on_pool(self, plan: Plan, requester: Requester, url: str, accepted: str | None) -> bool:
        """Queue a slash command's work; its record is deleted once answered, or kept if the process stops first."""

        def reply(message: Message, **how: bool) -> None:  # a card, or a note: either way the command is answered
            if self._pool.abandoned:  # the process is stopping: `left_behind` spoke for this command
                return
            self._poster.respond(url, message, **how)
            self._accepted.finish(accepted)

        def job() -> None:  # a new message below the ack's note: Slack cannot replace a message an ack showed
            answer = self._run(plan.action, requester, plan.work)
            in_channel = plan.card and self._in_channel and not for_asker_only(plan, answer)
            reply(answer.message, in_channel=in_channel)

        def left_behind() -> None:  # the grace period ran out: the next process answers, or the person is told
            if accepted is None or not self._accepted.durable:
                self._poster.respond(url, cards.notice(RESTARTING))
                self._accepted.finish(accepted)

        return self.submit(plan.action, requester, job, reply, left_behind)

    # Mentions and direct messages --------------------------------------------------------------

    def on_mention(self, event: dict[str, Any], context: BoltContext) -> None:
        if str(event.get("channel", "")).startswith("D"):
            return  # a mention inside a DM also arrives as a message.im event, answered there
        self._answer_message(requester_in(context), event, thread_ts=event.get("thread_ts") or event.get("ts"))

    def on_message(self, event: dict[str, Any], context: BoltContext) -> None:
        if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id"):
            return  # only people's direct messages; the bot's own and edited messages are ignored
        self._answer_message(requester_in(context), event, thread_ts=event.get("thread_ts"))

    def _answer_message(self, requester: Requester, event: dict[str, Any], *, thread_ts: str | None) -> None:
        """A mention or DM: recorded before its work starts, like a slash command, then answered in its thread."""
        text = message_text(str(event.get("text", "")))
        parsed = parse_command(text)
        admitted = self._admit(requester, parsed)
        if isinstance(admitted, Denied):
            self._refuse_in_thread(requester, admitted, thread_ts)
            return
        plan = plan_for(parsed, requester, admitted, self._replier, self._watches)
        origin = Origin.DIRECT if event.get("channel_type") == "im" else Origin.MENTION
        accepted = self._accepted.accept(requester, text, origin=origin, thread_ts=thread_ts)
        if not self._message_on_pool(plan, requester, origin, thread_ts, accepted):
            self._accepted.finish(accepted)
            channel = requester.channel_id
            in_background(lambda: self._poster.post(channel, cards.notice(BUSY), thread_ts=thread_ts))

    def _refuse_in_thread(self, requester: Requester, denied: Denied, thread_ts: str | None) -> None:
        channel, user, note = requester.channel_id, requester.user_id, cards.notice(denied.message)
        in_background(lambda: self._poster.post_ephemeral(channel, user, note, thread_ts=thread_ts))

    def _message_on_pool(
        self, plan: Plan, requester: Requester, origin: Origin, thread_ts: str | None, accepted: str | None
    ) -> bool:
        """Queue a mention's or DM's work; its record is deleted once answered, or kept if the process stops first."""
        channel, in_dm = requester.channel_id, origin is Origin.DIRECT  # only the asker reads a DM
        # A card stays with the asker where cards are private (BOT_RESPONSE_VISIBILITY=ephemeral), or where
        # another organisation reads the channel (Slack Connect) and BOT_ALLOW_EXTERNAL does not allow it.
        cards_private = not self._in_channel or (requester.shared_channel and not self._gate.external_readers_allowed)

        def post(message: Message, *, private: bool = False) -> None:
            if self._pool.abandoned:  # the process is stopping: `left_behind` spoke for this message
                return
            if private:
                self._poster.post_ephemeral(channel, requester.user_id, message, thread_ts=thread_ts)
            else:
                self._poster.post(channel, message, thread_ts=thread_ts)
            self._accepted.finish(accepted)

        def job() -> None:
            answer = self._run(plan.action, requester, plan.work)
            post(answer.message, private=not in_dm and (cards_private or for_asker_only(plan, answer)))

        def left_behind() -> None:  # the grace period ran out: the next process answers, or the person is told
            if accepted is None or not self._accepted.durable:
                self._poster.post(channel, cards.notice(RESTARTING), thread_ts=thread_ts)
                self._accepted.finish(accepted)

        return self.submit(plan.action, requester, job, post, left_behind)

    # Buttons -----------------------------------------------------------------------------------

    def on_refresh(self, ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext) -> None:
        message_ts = str(_nested(body, "container", "message_ts") or "")
        channel = requester_in(context).channel_id

        def answer(query: DeviceQuery, scope: DeviceScope) -> Answer:
            return self.card_for(channel, message_ts, query, scope, refresh=True)

        self._on_button(ack, body, action, context, Action.BUTTON_REFRESH, answer, replace_original=True)

    def card_for(
        self, channel: str, message_ts: str, query: DeviceQuery, scope: DeviceScope, *, refresh: bool = False
    ) -> Answer:
        """The card at `message_ts` drawn again: a watch's root card stays one (same watch line, Unwatch)."""
        root = self._watches.root_card_for(channel, message_ts, scope) if message_ts else None
        return root or self._replier.lookup(query, refresh=refresh, scope=scope)

    def on_open_device(self, ack: Ack) -> None:  # a link button: Slack opens it, but expects an acknowledgement
        ack()

    def on_watch(self, ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext) -> None:
        """Watch from a card: the device and filters come from the button, the channel from the payload."""
        requester = requester_in(context)

        def start(query: DeviceQuery, scope: DeviceScope) -> Answer:
            return self._watches.start(requester.channel_id, requester.user_id, query, DEFAULT_DURATION, scope)

        self._on_button(ack, body, action, context, Action.BUTTON_WATCH, start)

    def on_unwatch(self, ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext) -> None:
        requester = requester_in(context)

        def stop(query: DeviceQuery, scope: DeviceScope) -> Answer:
            return self._watches.stop(requester.channel_id, requester.user_id, query)

        self._on_button(ack, body, action, context, Action.BUTTON_UNWATCH, stop)

    def _on_button(
        self,
        ack: Ack,
        body: dict[str, Any],
        action: dict[str, Any],
        context: BoltContext,
        kind: Action,
        answer: Callable[[DeviceQuery, DeviceScope], Answer],
        *,
        replace_original: bool = False,
    ) -> None:
        """Acknowledge, check who pressed where, open the button's sealed payload, answer from the pool.

        The press is checked like a new command from this person in this channel: a card seen somewhere
        else (or an interaction crafted by hand) never widens what they may see.
        """
        ack()
        url = str(body.get("response_url", ""))
        requester = requester_in(context)
        try:
            query = actions.parse_lookup_value(self._seal.open(str(action.get("value", ""))))
        except QueryError:
            log.warning("refused a button with a payload this bot did not write")
            self._audit.record(kind, requester, Outcome(Result.INVALID, reason="button_payload"))
            self._tell(url, cards.notice(INVALID_BUTTON))
            return
        admitted = self._gate.admit(requester, costly=kind is not Action.BUTTON_UNWATCH)
        if isinstance(admitted, Denied):
            self._audit.record(kind, requester, Outcome(admitted.result, query.device.value, reason=admitted.reason))
            self._tell(url, cards.notice(admitted.message))
            return
        scope = admitted

        def job() -> None:
            message = self._run(kind, requester, lambda: answer(query, scope)).message
            self._poster.respond(url, message, replace_original=replace_original)

        if not self.submit(kind, requester, job, lambda message: self._poster.respond(url, message)):
            self._tell(url, cards.notice(BUSY))

    def _tell(self, response_url: str, message: Message) -> None:  # an ephemeral note to who asked or pressed
        if response_url:
            in_background(lambda: self._poster.respond(response_url, message))

    # Errors ------------------------------------------------------------------------------------

    def on_error(self, error: Exception, body: dict[str, Any], context: BoltContext) -> None:
        requester = verified_requester(context)
        if requester is None:
            # Bolt failed before the request was verified: nothing from its body may reach a log or the network
            # (its response_url could point anywhere).
            log.warning("a request failed before verification: %s", type(error).__name__)
            return
        kind = "command" if "command" in body else "event" if "event" in body else "button"
        reference = _report(error, requester, f"a {kind} request")
        url = body.get("response_url")
        if isinstance(url, str):
            self._tell(url, _oops(reference))

    # Shared steps ------------------------------------------------------------------------------

    def _admit(self, requester: Requester, parsed: Command) -> Denied | DeviceScope:
        """The gate's decision; a refusal is written to the audit trail here, once."""
        admitted = self._gate.admit(requester, costly=costly(parsed))
        if isinstance(admitted, Denied):
            device = parsed.query.device.value if isinstance(parsed, Lookup | StartWatch | StopWatch) else None
            self._audit.record(action_of(parsed), requester, Outcome(admitted.result, device, reason=admitted.reason))
        return admitted

    def _answer_now(self, plan: Plan, requester: Requester) -> Message:
        """Run quick work inside the acknowledgement; a failure (the state store down) is still an answer."""
        try:
            return self._run(plan.action, requester, plan.work).message
        except RedisUnavailable:  # `watches` reads them from Redis
            return self._watches_unavailable(plan.action, requester)
        except Exception as exc:
            self._audit.record(plan.action, requester, Outcome(Result.ERROR, reason="unexpected"))
            return _oops(_report(exc, requester, "a command"))

    def _watches_unavailable(self, kind: Action, requester: Requester) -> Message:
        log.warning("answered that watches are unavailable: the shared state store (Redis) is unreachable")
        self._audit.record(kind, requester, Outcome(Result.ERROR, reason="shared_state_unavailable"))
        return cards.notice(WATCHES_UNAVAILABLE)

    def _run(self, kind: Action, requester: Requester, work: Callable[[], Answer]) -> Answer:
        """Do the work, counting the Defender requests it makes, and write its audit record."""
        with counting_requests() as count:
            answer = work()
        self._gate.settle(requester, count.requests)  # the limits weigh what the work cost Defender
        self._audit.record(kind, requester, answer.outcome, defender_calls=count.requests)
        return answer

    def submit(
        self, kind: Action, requester: Requester, job: Callable[[], object], deliver: Callable[[Message], object],
        on_abandon: Callable[[], object] | None = None,
    ) -> bool:  # fmt: skip
        """Queue `job`; a failure, or the process stopping first, is told through `deliver` (or `on_abandon`)."""

        def guarded() -> None:
            try:
                job()
            except StoreFailing as exc:  # a full disk: say so, rather than "something went wrong"
                log.error("the watch store cannot be written: %s", exc.reason)
                self._audit.record(kind, requester, Outcome(Result.ERROR, reason="store_failing"))
                deliver(cards.notice(f"The bot cannot save watches right now: {exc.reason}. Lookups still work."))
            except RedisUnavailable:  # watches live in Redis: say so, rather than "something went wrong"
                deliver(self._watches_unavailable(kind, requester))
            except Exception as exc:
                if not self._pool.abandoned:  # once the process is stopping, `on_abandon` spoke for the job
                    reference = _report(exc, requester, "a background lookup")
                    self._audit.record(kind, requester, Outcome(Result.ERROR, reason="unexpected"))
                    deliver(_oops(reference))

        submitted = self._pool.submit(guarded, on_abandon or (lambda: deliver(cards.notice(RESTARTING))))
        if not submitted:
            self._audit.record(kind, requester, Outcome(Result.BUSY))
        return submitted


def _nested(body: dict[str, Any], key: str, inner: str) -> Any:
    value = body.get(key)
    return value.get(inner) if isinstance(value, dict) else None
