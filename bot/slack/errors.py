"""What a Slack Web API error means for the bot: one classification for every caller.

Slack answers a failed call with an error code (`not_in_channel`, `ratelimited`, …) or an HTTP status.
Callers do not keep their own lists of codes; they ask `classify` which kind of failure it is.
"""

from __future__ import annotations

import enum


class SlackErrorKind(enum.Enum):
    TRANSIENT = "transient"  # try again later: rate limits, Slack's own failures, the network
    PAUSING = "pausing"  # posting in that channel will not work until someone acts (invite, unarchive)
    MISSING_SCOPE = "missing_scope"  # the app was installed without a scope this call needs
    GONE = "gone"  # the thread or message asked about no longer exists
    OTHER = "other"


_KINDS: dict[str, SlackErrorKind] = {
    **dict.fromkeys(
        ("ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"),
        SlackErrorKind.TRANSIENT,
    ),
    **dict.fromkeys(
        ("channel_not_found", "not_in_channel", "is_archived", "restricted_action"), SlackErrorKind.PAUSING
    ),
    **dict.fromkeys(("missing_scope", "not_allowed_token_type"), SlackErrorKind.MISSING_SCOPE),
    **dict.fromkeys(("thread_not_found", "message_not_found"), SlackErrorKind.GONE),
}

# What a paused watch says, per pausing error.
_PAUSE_REASONS = {
    "channel_not_found": "the channel is gone or the bot cannot see it",
    "not_in_channel": "the bot is not in the channel: invite it, then start the watch again",
    "is_archived": "the channel is archived",
    "restricted_action": "the workspace does not let the bot post here",
}


def classify(error: str | None, status: int | None = None) -> SlackErrorKind:
    """The kind of a failed call from its error code and, when known, its HTTP status (429 and 5xx are transient)."""
    if status is not None and (status == 429 or status >= 500):
        return SlackErrorKind.TRANSIENT
    return _KINDS.get(error or "", SlackErrorKind.OTHER)


def pause_reason(error: str | None) -> str:
    """Why posting stopped, in words for the channel's people."""
    return _PAUSE_REASONS.get(error or "", f"Slack answered {error}")
