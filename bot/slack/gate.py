"""The door every Slack request passes: who is asking (from the signed payload), may they, how often.

Listeners call `Gate.admit` before any work is queued; a refusal is answered to the asker alone and
nothing is fetched. An admitted request carries the `DeviceScope` its lookups are limited to.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.access.audit import Result
from bot.access.policy import AccessPolicy, Installation, MembershipSource, Refusal, Requester
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
        self, policy: AccessPolicy, installation: Installation, memberships: MembershipSource, limiter: RequestLimiter
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

    def settle(self, requester: Requester, defender_requests: int) -> None:
        """Charge an admitted request's Defender requests beyond the one `admit` took (work that made none,
        or one, costs nothing more), so limits weigh what people cost Defender rather than what they send."""
        self._limiter.charge(requester.team_id, requester.channel_id, requester.user_id, defender_requests - 1)

    @property
    def external_readers_allowed(self) -> bool:
        """`BOT_ALLOW_EXTERNAL`: whether cards may be posted where another organisation reads (Slack Connect)."""
        return self._policy.allow_external

    def check(self, requester: Requester) -> Refusal | DeviceScope:
        """The access policy alone (a watch's follow-ups are checked this way, without rate limits).

        It runs before Slack's acknowledgement: user groups not read yet get one bounded wait, all together."""
        self._memberships.prepare(self._policy.usergroup_ids)
        return self._policy.check(requester, self._installation, self._memberships)

    def on_behalf_of(self, channel_id: str, user_id: str) -> Requester:
        """A requester for work the bot does later for someone (a watch's poll), in its own workspace."""
        return Requester(
            team_id=self._installation.team_id or "",
            channel_id=channel_id,
            user_id=user_id,
            enterprise_id=self._installation.enterprise_id,
        )
