"""What people type to the bot, in slash commands, mentions and DMs, parsed into a `Command`.

Mention and DM text arrives in Slack's message format: the bot's own `<@U…>` mention, hostnames that
Slack auto-linked as `<http://host|host>`, and `&`, `<`, `>` as entities. `message_text` turns that back
into what the person typed; `parse_command` then applies the same strict grammar as the terminal.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from bot.alerts.query import DeviceQuery, QueryError, parse_query

MAX_MESSAGE_LENGTH = 40_000  # Slack's own cap on message text; the grammar then allows far less
RESERVED_WORDS = frozenset({"watch", "unwatch", "watches"})
HELP_WORDS = frozenset({"help", "?", "usage"})

_USER_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
_LINK = re.compile(r"<(?:https?://|mailto:)([^>|]*)(?:\|([^>]*))?>")


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Lookup:
    query: DeviceQuery
    text: str


@dataclass(frozen=True, slots=True)
class Reserved:
    word: str


@dataclass(frozen=True, slots=True)
class Invalid:
    error: QueryError
    text: str


Command = Help | Lookup | Reserved | Invalid


def message_text(raw: str) -> str:
    """Undo Slack's message formatting: drop user mentions, unwrap auto-links, decode entities."""
    text = _USER_MENTION.sub(" ", raw[:MAX_MESSAGE_LENGTH])
    text = _LINK.sub(lambda m: m[2] or m[1], text)
    return html.unescape(text).strip()


def parse_command(text: str) -> Command:
    """Help, a reserved word, a lookup, or an explanation of what is wrong with the text."""
    words = text.split()
    if not words:
        return Help()
    if words[0].lower() == "alerts":  # `@bot alerts ws-fin-014` reads the same as `@bot ws-fin-014`
        text = text.split(None, 1)[1] if len(words) > 1 else ""
        words = words[1:]
    if words and words[0].lower() in HELP_WORDS:
        return Help()
    if words and words[0].lower() in RESERVED_WORDS:
        return Reserved(words[0].lower())
    try:
        return Lookup(parse_query(text), text)
    except QueryError as exc:
        return Invalid(exc, text)
