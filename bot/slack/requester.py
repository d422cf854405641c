"""Who is asking: the `Requester` of a signed Slack payload, read once per request by a middleware.

`identify` runs after Bolt has verified the request and puts the requester in the Bolt context under
`REQUESTER`; listeners and the error handler read it from there. Each payload kind keeps the ids in its own
places (a slash command's form fields, an event envelope, an interaction's nested objects).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import BoltContext

from bot.access.policy import Requester

REQUESTER = "device_alerts_requester"


def identify(body: dict[str, Any], context: BoltContext, next: Callable[[], None]) -> None:
    """Bolt middleware: read the requester from the (already verified) payload, once."""
    context[REQUESTER] = requester_of(body)
    next()


def verified_requester(context: BoltContext) -> Requester | None:
    """The requester, if `identify` ran: only then had the request passed verification."""
    found = context.get(REQUESTER)
    return found if isinstance(found, Requester) else None


def requester_in(context: BoltContext) -> Requester:
    """The requester `identify` found; an empty one where it did not run (a request Bolt refused earlier)."""
    found = context.get(REQUESTER)
    return found if isinstance(found, Requester) else Requester(team_id="", channel_id="", user_id="")


def requester_of(body: dict[str, Any]) -> Requester:
    """Whichever kind of request `body` is: slash command, Events API envelope, or interaction."""
    if "command" in body:
        return _from_command(body)
    if "event" in body:
        return _from_event(body)
    return _from_action(body)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _optional(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _field(body: dict[str, Any], key: str, inner: str) -> Any:
    value = body.get(key)
    return value.get(inner) if isinstance(value, dict) else None


def _from_command(payload: dict[str, Any]) -> Requester:
    return Requester(
        team_id=_text(payload.get("team_id")),
        channel_id=_text(payload.get("channel_id")),
        user_id=_text(payload.get("user_id")),
        enterprise_id=_optional(payload.get("enterprise_id")),
        user_team_id=_optional(payload.get("user_team_id")),
    )


def _from_event(body: dict[str, Any]) -> Requester:
    """An Events API envelope: the workspace it was delivered for, and the author's own workspace."""
    event = _mapping(body.get("event"))
    authorizations = body.get("authorizations")
    delivered_for = _mapping(authorizations[0]) if isinstance(authorizations, list) and authorizations else {}
    team_id = _text(delivered_for.get("team_id")) or _text(body.get("team_id"))
    return Requester(
        team_id=team_id,
        channel_id=_text(event.get("channel")),
        user_id=_text(event.get("user")),
        enterprise_id=_optional(body.get("enterprise_id")) or _optional(delivered_for.get("enterprise_id")),
        user_team_id=_optional(event.get("user_team")) or _optional(event.get("team")) or team_id or None,
        shared_channel=body.get("is_ext_shared_channel") is True,
    )


def _from_action(body: dict[str, Any]) -> Requester:
    """A block_actions payload: the workspace and channel where the button was pressed, and who pressed it."""
    return Requester(
        team_id=_text(_field(body, "team", "id")),
        channel_id=_text(_field(body, "channel", "id")) or _text(_field(body, "container", "channel_id")),
        user_id=_text(_field(body, "user", "id")),
        enterprise_id=_optional(_field(body, "enterprise", "id")),
        user_team_id=_optional(_field(body, "user", "team_id")),
    )
