"""The one place where untrusted text becomes Slack mrkdwn.

`&`, `<` and `>` are Slack's control characters: unescaped, `<!channel>` pings a channel, `<@U…>` a person
and `<https://x|label>` makes a disguised link. Every string that did not come from this code base goes
through `text()` (or `plain()` for plain_text objects) before it reaches a block.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from bot.text import clean


def escape(value: str) -> str:
    """Entity-escape Slack's three control characters (and nothing else, as Slack requires)."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def text(value: str, limit: int | None = None) -> str:
    """Untrusted text for mrkdwn: cleaned, cut to `limit` visible characters, then escaped."""
    return escape(clean(value, limit))


def clip(escaped: str, limit: int) -> str:
    """Cut already-escaped mrkdwn to `limit` characters without splitting an entity such as `&amp;`."""
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - 5))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def plain(value: str, limit: int | None = None) -> str:
    """Untrusted text for plain_text objects: cleaned and cut; Slack shows plain_text literally."""
    return clean(value, limit)


def link(url: str, label: str, limit: int | None = None) -> str:
    """A link whose label is untrusted text; `url` must be one this code built (ids percent-encoded)."""
    label_text = text(label, limit).replace("|", "¦")  # a '|' would end the label early
    return f"<{url}|{label_text}>" if label_text else f"<{url}>"


_SLACK_ID = re.compile(r"[UW][A-Z0-9]{2,20}")


def user(user_id: str) -> str:
    """A mention of a Slack user id (from a signed Slack payload); anything else is shown as escaped text."""
    return f"<@{user_id}>" if _SLACK_ID.fullmatch(user_id) else text(user_id, 40)


def date(moment: datetime, fmt: str = "{date_short_pretty} {time}") -> str:
    """A date token each reader sees in their own timezone, with a UTC fallback for old clients."""
    fallback = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{fmt}|{fallback}>"
