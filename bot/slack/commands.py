"""What people type to the bot, in slash commands, mentions and DMs, parsed into a `Command`.

Mention and DM text arrives in Slack's message format: the bot's own `<@U…>` mention, hostnames that
Slack auto-linked as `<http://host|host>`, and `&`, `<`, `>` as entities. `message_text` turns that back
into what the person typed; `parse_command` then applies the same strict grammar as the terminal.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import timedelta

from bot.alerts.query import USAGE, DeviceQuery, QueryError, parse_query
from bot.watch.terms import DEFAULT_DURATION, MAX_DURATION

MAX_MESSAGE_LENGTH = 40_000  # Slack's own cap on message text; cut there before any pattern runs
MAX_COMMAND_LENGTH = 1_000  # far more than any valid command; longer text is refused, not cut
WATCH_USAGE = "watch <machineId|hostname> [for:8h] [severity:high,medium] [status:new,inprogress,resolved]"
UNWATCH_USAGE = "unwatch <machineId|hostname>"
_USAGES = {"watch": WATCH_USAGE, "unwatch": UNWATCH_USAGE}
HELP_WORDS = frozenset({"help", "?", "usage"})

_USER_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
_LINK = re.compile(r"<(?:https?://|mailto:)([^>|]*)(?:\|([^>]*))?>")
# `for:` reads like `since:` (30m, 8h, 2d, 1w) but is checked against a watch's own limit, not since:'s 180 days.
_DURATION = re.compile(r"([0-9]{1,4})([mhdw])")
_DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Lookup:
    query: DeviceQuery
    text: str


@dataclass(frozen=True, slots=True)
class StartWatch:
    query: DeviceQuery
    duration: timedelta
    text: str


@dataclass(frozen=True, slots=True)
class StopWatch:
    query: DeviceQuery
    text: str


@dataclass(frozen=True, slots=True)
class ListWatches:
    pass


@dataclass(frozen=True, slots=True)
class Invalid:
    error: QueryError
    text: str
    usage: str = USAGE  # the grammar the text was meant to follow


Command = Help | Lookup | StartWatch | StopWatch | ListWatches | Invalid


def message_text(raw: str) -> str:
    """Undo Slack's message formatting: drop user mentions, unwrap auto-links, decode entities."""
    text = _USER_MENTION.sub(" ", raw[:MAX_MESSAGE_LENGTH])
    text = _LINK.sub(lambda m: m[2] or m[1], text)
    return html.unescape(text).strip()


def parse_command(text: str) -> Command:
    """Help, a watch command, a lookup, or an explanation of what is wrong with the text."""
    if len(text) > MAX_COMMAND_LENGTH:
        return Invalid(QueryError(f"the request is longer than {MAX_COMMAND_LENGTH} characters"), text[:60] + "…")
    words = text.split()
    if not words:
        return Help()
    if words[0].lower() == "alerts":  # `@bot alerts ws-fin-014` reads the same as `@bot ws-fin-014`
        text = text.split(None, 1)[1] if len(words) > 1 else ""
        words = words[1:]
    if words and words[0].lower() in HELP_WORDS:
        return Help()
    verb = words[0].lower() if words else ""
    rest = text.split(None, 1)[1] if len(words) > 1 else ""
    try:
        if verb == "watches":
            return ListWatches()
        if verb == "watch":
            duration, rest = _watch_duration(rest)
            return StartWatch(parse_query(rest), duration, rest)
        if verb == "unwatch":
            return StopWatch(parse_query(rest), rest)
        return Lookup(parse_query(text), text)
    except QueryError as exc:
        return Invalid(exc, text, _USAGES.get(verb, USAGE))


def _watch_duration(text: str) -> tuple[timedelta, str]:
    """Take `for:8h` out of a watch request: (duration, the rest of the text)."""
    words = text.split()
    spans = [index for index, word in enumerate(words) if word.lower().startswith("for:")]
    if len(spans) > 1:
        raise QueryError("'for:' is given twice")
    if not spans:
        return DEFAULT_DURATION, text
    value = words[spans[0]][4:]
    match = _DURATION.fullmatch(value.strip().lower())
    if match is None:
        raise QueryError(f"'for:{value[:20]}' is not a duration like 30m, 8h or 2d")
    duration = timedelta(**{_DURATION_UNITS[match[2]]: int(match[1])})
    if duration <= timedelta(0):
        raise QueryError("'for:' must be longer than zero")
    if duration > MAX_DURATION:
        raise QueryError("a watch lasts at most 7d")
    return duration, " ".join(word for index, word in enumerate(words) if index != spans[0])
