"""Who may change alerts from Slack: nobody unless an admin switched triage on and named the people.

Triage (`BOT_TRIAGE=on`) comes on top of every other rule: a person must first pass the access policy and the
device-group policy like any lookup, and then be in `BOT_TRIAGE_USERS` or a member of one of
`BOT_TRIAGE_USERGROUPS`. Both lists empty means nobody may write, even with triage on.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.access.policy import Memberships, person_listed

NOT_ENABLED = "Changing alerts from Slack is switched off for this bot."
NOT_LISTED = "You are not on this bot's list of people who may change alerts. Ask {contact} if you need it."


@dataclass(frozen=True, slots=True)
class TriagePolicy:
    enabled: bool = False
    users: frozenset[str] = frozenset()
    usergroups: frozenset[str] = frozenset()

    def refusal(self, user_id: str, memberships: Memberships, contact: str) -> str | None:
        """Why this person may not write (None: they may). A membership lookup failure propagates."""
        if not self.enabled:
            return NOT_ENABLED
        if person_listed(user_id, self.users, self.usergroups, memberships):
            return None
        return NOT_LISTED.format(contact=contact)
