"""The door every Slack request passes: who is asking (from the signed payload), may they, how often.

Listeners call `Gate.admit` before any work is queued; a refusal is answered to the asker alone and
nothing is fetched. An admitted request carries the `DeviceScope` its lookups are limited to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.access.audit import Result
from bot.access.policy import AccessPolicy, Installation, Memberships, Refusal, Requester
from bot.alerts.scope import DeviceScope
from bot.state.limits import RequestLimiter


@dataclass(frozen=True, slots=True)
class Denied:
    """A request the bot will not serve: the note for the asker and the audit trail's words for why."""

    message: str
    result: Result
    reason: str


class Gate:
    def __init__(
        self, policy: AccessPolicy, installation: Installation, memberships: Memberships, limiter: RequestLimiter
    ) -> None:
        self._policy = policy
        self._installation = installation
        self._memberships = memberships
        self._limiter = limiter

    def admit(self, requester: Requester, *, costly: bool) -> Denied | DeviceScope:
        """Check the access policy, then (for requests that may call Defender) the rate limits."""
        decision = self.check(requester)
        if isinstance(decision, Refusal):
            return Denied(decision.reason, Result.REFUSED, decision.rule.value)
        if costly:
            slow = self._limiter.admit(requester.team_id, requester.channel_id, requester.user_id)
            if slow is not None:
                return Denied(slow.message, Result.RATE_LIMITED, f"{'user' if slow.scope == 'you' else 'channel'}_rate")
        return decision

    def check(self, requester: Requester) -> Refusal | DeviceScope:
        """The access policy alone (a watch's follow-ups are checked this way, without rate limits)."""
        return self._policy.check(requester, self._installation, self._memberships)

    def on_behalf_of(self, channel_id: str, user_id: str) -> Requester:
        """A requester for work the bot does later for someone (a watch's poll), in its own workspace."""
        return Requester(
            team_id=self._installation.team_id or "",
            channel_id=channel_id,
            user_id=user_id,
            enterprise_id=self._installation.enterprise_id,
        )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _optional(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _field(body: dict[str, Any], key: str, inner: str) -> Any:
    value = body.get(key)
    return value.get(inner) if isinstance(value, dict) else None


def from_command(payload: dict[str, Any]) -> Requester:
    return Requester(
        team_id=_text(payload.get("team_id")),
        channel_id=_text(payload.get("channel_id")),
        user_id=_text(payload.get("user_id")),
        enterprise_id=_optional(payload.get("enterprise_id")),
        user_team_id=_optional(payload.get("user_team_id")),
    )


def from_event(body: dict[str, Any]) -> Requester:
    """An Events API envelope: the workspace it was delivered for, and the author's own workspace."""
    event = _mapping(body.get("event"))
    authorizations = body.get("authorizations")
    delivered_for = _mapping(authorizations[0]) if isinstance(authorizations, list) and authorizations else {}
    team_id = _text(delivered_for.get("team_id")) or _text(body.get("team_id"))
    return Requester(
        team_id=team_id,
        channel_id=_text(event.get("channel")),
        user_id=_text(event.get("user")),
        enterprise_id=_optional(body.get("enterprise_id")),
        user_team_id=_optional(event.get("user_team")) or _optional(event.get("team")) or team_id or None,
    )


def from_action(body: dict[str, Any]) -> Requester:
    """A block_actions payload: the workspace and channel where the button was pressed, and who pressed it."""
    return Requester(
        team_id=_text(_field(body, "team", "id")),
        channel_id=_text(_field(body, "channel", "id")) or _text(_field(body, "container", "channel_id")),
        user_id=_text(_field(body, "user", "id")),
        enterprise_id=_optional(_field(body, "enterprise", "id")),
        user_team_id=_optional(_field(body, "user", "team_id")),
    )


def from_body(body: dict[str, Any]) -> Requester:
    """Whichever kind of request `body` is (for error reports, where the listener's kind is unknown)."""
    if "command" in body:
        return from_command(body)
    if "event" in body:
        return from_event(body)
    return from_action(body)
