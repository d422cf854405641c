"""Bolt listeners: each parses what arrived, hands slow work to the pool, and acknowledges at once.

The app runs with `process_before_response=True`, so a listener's own code runs on the request thread
and must stay short: parsing and `WorkPool.submit`. Lookups and posts happen on the pool's workers.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import cachetools
from slack_bolt import Ack, App, BoltResponse

from bot.alerts.query import DeviceQuery, QueryError
from bot.config import Visibility
from bot.slack import actions, cards
from bot.slack.blockkit import Message
from bot.slack.commands import Command, Help, Invalid, ListWatches, StartWatch, StopWatch, message_text, parse_command
from bot.slack.outbox import Outbox
from bot.slack.replies import BUSY, Replier
from bot.slack.watching import SlackWatches
from bot.slack.work import WorkPool
from bot.watch.model import DEFAULT_DURATION

log = logging.getLogger(__name__)

COMMAND = "/device-alerts"
INVALID_BUTTON = "That button's data is not valid. Run the command again."


class EventDeduper:
    """Drops an event whose `event_id` was seen before: Slack retries deliveries, and a retry must not reply twice."""

    def __init__(self, ttl: float = 3600.0, maxsize: int = 10_000) -> None:
        self._seen: cachetools.TTLCache[str, bool] = cachetools.TTLCache(maxsize, ttl)
        self._lock = threading.Lock()

    def first_time(self, event_id: str) -> bool:
        with self._lock:
            if event_id in self._seen:
                return False
            self._seen[event_id] = True
            return True

    def middleware(self, body: dict[str, Any], next: Callable[[], None]) -> BoltResponse | None:
        event_id = body.get("event_id")
        if isinstance(event_id, str) and not self.first_time(event_id):
            log.info("dropped a repeated delivery of event %s", event_id)
            return BoltResponse(status=200, body="")
        next()
        return None


def _in_background(work: Callable[[], object]) -> None:
    """For the 'busy' notice itself: it must not wait for the pool that is full."""
    threading.Thread(target=work, daemon=True, name="busy-notice").start()


def _report(error: Exception, body: dict[str, Any], where: str) -> str:
    """Log an unexpected error with the ids that locate it; return the reference shown to the person."""
    reference = uuid.uuid4().hex[:8]
    log.error(
        "unhandled error %s in %s (team %s, channel %s, user %s)",
        reference,
        where,
        _nested(body, "team", "id") or body.get("team_id"),
        _nested(body, "channel", "id") or body.get("channel_id") or _nested(body, "event", "channel"),
        _nested(body, "user", "id") or body.get("user_id") or _nested(body, "event", "user"),
        exc_info=error,
    )
    return reference


def _oops(reference: str) -> Message:
    return cards.notice(f"Something went wrong on the bot's side (reference {reference}).")


@dataclass(frozen=True, slots=True)
class Plan:
    """How to answer a command: at once (`immediate`), or on the pool (`work`) after a short `note`."""

    immediate: Message | None = None
    work: Callable[[], Message] | None = None
    note: str = ""
    card: bool = False  # a device card, which follows BOT_RESPONSE_VISIBILITY; notes stay with the asker


class Listeners:
    def __init__(
        self, replier: Replier, watches: SlackWatches, pool: WorkPool, outbox: Outbox, visibility: Visibility
    ) -> None:
        self._replier = replier
        self._watches = watches
        self._pool = pool
        self._outbox = outbox
        self._in_channel = visibility is Visibility.IN_CHANNEL

    def _plan(self, parsed: Command, channel: str, user: str) -> Plan:
        if isinstance(parsed, Help | Invalid):
            return Plan(immediate=self._replier.immediate(parsed))
        if isinstance(parsed, ListWatches):
            return Plan(immediate=self._watches.list(channel))
        if isinstance(parsed, StartWatch):
            start = partial(self._watches.start, channel, user, parsed.query, parsed.duration)
            return Plan(work=start, note=f"Setting up a watch on {parsed.text}…")
        if isinstance(parsed, StopWatch):
            return Plan(work=partial(self._watches.stop, channel, user, parsed.query), note="Stopping the watch…")
        lookup = partial(self._replier.lookup, parsed.query, parsed.text)
        return Plan(work=lookup, note=f"Looking up {parsed.text}…", card=True)

    def register(self, app: App, deduper: EventDeduper) -> None:
        app.middleware(deduper.middleware)
        app.command(COMMAND)(self.on_command)
        app.event("app_mention")(self.on_mention)
        app.event("message")(self.on_message)
        app.action(actions.REFRESH)(self.on_refresh)
        app.action(actions.OPEN_DEVICE)(self.on_open_device)
        app.action(actions.WATCH)(self.on_watch)
        app.action(actions.UNWATCH)(self.on_unwatch)
        app.error(self.on_error)

    # Slash command -----------------------------------------------------------------------------

    def on_command(self, ack: Ack, command: dict[str, Any]) -> None:
        parsed = parse_command(str(command.get("text", "")))
        plan = self._plan(parsed, str(command.get("channel_id", "")), str(command.get("user_id", "")))
        if plan.work is None:
            ack(**(plan.immediate or cards.notice(BUSY)).payload())
            return
        url, work = str(command["response_url"]), plan.work
        in_channel = plan.card and self._in_channel

        def job() -> None:
            # A channel card is a new message; anything seen only by the asker replaces the note.
            self._outbox.respond(url, work(), in_channel=in_channel, replace_original=not in_channel)

        submitted = self._submit(command, job, lambda message: self._outbox.respond(url, message))
        ack(**cards.notice(plan.note if submitted else BUSY).payload())

    # Mentions and direct messages --------------------------------------------------------------

    def on_mention(self, event: dict[str, Any]) -> None:
        if str(event.get("channel", "")).startswith("D"):
            return  # a mention inside a DM also arrives as a message.im event, answered there
        self._answer_message(event, thread_ts=event.get("thread_ts") or event.get("ts"))

    def on_message(self, event: dict[str, Any]) -> None:
        if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id"):
            return  # only people's direct messages; the bot's own and edited messages are ignored
        self._answer_message(event, thread_ts=event.get("thread_ts"))

    def _answer_message(self, event: dict[str, Any], *, thread_ts: str | None) -> None:
        channel = str(event.get("channel", ""))
        parsed = parse_command(message_text(str(event.get("text", ""))))
        plan = self._plan(parsed, channel, str(event.get("user", "")))

        def job() -> None:
            message = plan.work() if plan.work is not None else plan.immediate
            if message is not None:
                self._outbox.post(channel, message, thread_ts=thread_ts)

        if not self._submit(
            {"event": event}, job, lambda message: self._outbox.post(channel, message, thread_ts=thread_ts)
        ):
            _in_background(lambda: self._outbox.post(channel, cards.notice(BUSY), thread_ts=thread_ts))

    # Buttons -----------------------------------------------------------------------------------

    def on_refresh(self, ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        message_ts = str(_nested(body, "container", "message_ts") or "")

        def answer(query: DeviceQuery) -> Message:
            # A watch's root card stays a root card: same watch line, same Unwatch button.
            card = self._watches.root_card_for(_channel_of(body), message_ts) if message_ts else None
            return card or self._replier.lookup(query, refresh=True)

        self._on_button(ack, body, action, answer, replace_original=True)

    def on_open_device(self, ack: Ack) -> None:
        ack()  # a link button: Slack opens the URL itself, but still expects the interaction acknowledged

    def on_watch(self, ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        """Watch from a card: the device and filters come from the button, the channel from the payload."""
        start = partial(self._watches.start, _channel_of(body), _user_of(body), duration=DEFAULT_DURATION)
        self._on_button(ack, body, action, start)

    def on_unwatch(self, ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        self._on_button(ack, body, action, partial(self._watches.stop, _channel_of(body), _user_of(body)))

    def _on_button(
        self,
        ack: Ack,
        body: dict[str, Any],
        action: dict[str, Any],
        answer: Callable[[DeviceQuery], Message],
        *,
        replace_original: bool = False,
    ) -> None:
        """Acknowledge, read the button's payload strictly, and answer at its response_url from the pool."""
        ack()
        url = str(body.get("response_url", ""))
        try:
            query = actions.parse_lookup_value(str(action.get("value", "")))
        except QueryError:
            log.warning("refused a button with a payload this bot did not write")
            self._tell(url, cards.notice(INVALID_BUTTON))
            return

        def job() -> None:
            self._outbox.respond(url, answer(query), replace_original=replace_original)

        if not self._submit(body, job, lambda message: self._outbox.respond(url, message)):
            self._tell(url, cards.notice(BUSY))

    def _tell(self, response_url: str, message: Message) -> None:
        """An ephemeral note to the person who pressed a button."""
        if response_url:
            _in_background(lambda: self._outbox.respond(response_url, message))

    # Errors ------------------------------------------------------------------------------------

    def on_error(self, error: Exception, body: dict[str, Any]) -> None:
        kind = body.get("type") or ("command" if "command" in body else "request")
        reference = _report(error, body, f"a {kind} request")
        url = body.get("response_url")
        if isinstance(url, str):
            self._tell(url, _oops(reference))

    def _submit(self, body: dict[str, Any], job: Callable[[], object], deliver: Callable[[Message], object]) -> bool:
        """Queue `job`; if it fails unexpectedly, the person still hears about it through `deliver`."""

        def guarded() -> None:
            try:
                job()
            except Exception as exc:
                deliver(_oops(_report(exc, body, "a background lookup")))

        return self._pool.submit(guarded)


def _channel_of(body: dict[str, Any]) -> str:
    return str(_nested(body, "channel", "id") or _nested(body, "container", "channel_id") or "")


def _user_of(body: dict[str, Any]) -> str:
    return str(_nested(body, "user", "id") or "")


def _nested(body: dict[str, Any], key: str, inner: str) -> Any:
    value = body.get(key)
    return value.get(inner) if isinstance(value, dict) else None
