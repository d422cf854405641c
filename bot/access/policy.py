"""Who may ask the bot, and which devices they may see.

The bot's app token reads every device in the tenant; Defender's device-group RBAC applies to people,
not to app tokens. This module puts both limits back, as pure decisions over a `Requester`:

- allow-lists of channels, users and user groups (unset = everyone; set = deny everything outside);
- the workspace check: requests must come from the workspace (or Enterprise Grid org) the bot is
  installed in, and people from other organisations in Slack Connect channels are refused unless
  `allow_external` is set;
- device-group scoping: a channel (or a user group) maps to Defender device groups (`rbacGroupName`);
  what a request may see is the channel's groups intersected with the person's groups.

Decisions say which rule refused and why; they never call Slack themselves: user-group membership
comes from a `Memberships` source, which may fail (and then the answer is "no", never "yes"). A
`MembershipSource` is prepared before each check (the groups read, in a bounded time) so that the
check itself never waits on Slack.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bot.alerts.scope import EVERY_DEVICE, NO_DEVICE, DeviceScope

DM_KEY = "dm"  # in allow-lists and the group policy: direct messages with the bot
DEFAULT_KEY = "default"  # in the group policy: every channel without its own entry
ALL_GROUPS = "*"
DEFAULT_CONTACT = "the people who run this bot"
MAX_GROUP_NAME = 256

_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,30}")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,30}")
_USERGROUP_ID = re.compile(r"S[A-Z0-9]{2,30}")


class PolicyError(ValueError):
    """A malformed allow-list or group policy; the message says where and what is expected."""


class MembershipUnavailable(Exception):
    """A user group's members could not be read (Slack error, missing `usergroups:read`)."""


def person_listed(user_id: str, users: frozenset[str], usergroups: frozenset[str], memberships: Memberships) -> bool:
    """In `users`, or a member of one of `usergroups`. A group that cannot be read is passed over while another
    lists the person; only when none does is it `MembershipUnavailable` (an unknown is never a yes)."""
    if user_id in users:
        return True
    unread: MembershipUnavailable | None = None
    for group in sorted(usergroups):
        try:
            if user_id in memberships.members(group):
                return True
        except MembershipUnavailable as exc:
            unread = exc
    if unread is not None:
        raise unread
    return False


class Memberships(Protocol):
    def members(self, usergroup_id: str) -> frozenset[str]:
        """The user ids in a user group; raises `MembershipUnavailable` when they cannot be known."""
        ...


class MembershipSource(Memberships, Protocol):
    def prepare(self, usergroup_ids: Collection[str]) -> None:
        """Read the groups not known yet, all at once, waiting a bounded time in all; never raises."""
        ...


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asks, from where: ids from a signed Slack payload (never from the text someone typed)."""

    team_id: str
    channel_id: str
    user_id: str
    enterprise_id: str | None = None
    user_team_id: str | None = None  # the person's own workspace; differs from team_id for Slack Connect guests
    shared_channel: bool = False  # a Slack Connect channel: people of other organisations read it too

    @property
    def in_dm(self) -> bool:
        return self.channel_id.startswith("D")


@dataclass(frozen=True, slots=True)
class Installation:
    """Where the bot is installed, as `auth.test` reports it."""

    team_id: str | None
    enterprise_id: str | None = None
    enterprise_install: bool = False

    def owns(self, team_id: str | None, enterprise_id: str | None) -> bool:
        """Whether a workspace belongs to this installation (any workspace of the org for an org-wide install)."""
        if self.enterprise_id and enterprise_id and enterprise_id != self.enterprise_id:
            return False
        if self.enterprise_install:
            return bool(enterprise_id) and enterprise_id == self.enterprise_id
        return team_id is not None and team_id == self.team_id

    def same_organisation(self, requester: Requester) -> bool:
        """Whether the person belongs here: their own workspace is the one asked in or installed in, or (Enterprise
        Grid, where events may name the person's team by the org's id, E…) the org the bot is installed in."""
        own = (None, requester.team_id, self.team_id, *((self.enterprise_id,) if self.enterprise_id else ()))
        return requester.user_team_id in own


def _scope(names: Iterable[str]) -> DeviceScope:
    folded = frozenset(name.casefold() for name in names)
    return EVERY_DEVICE if ALL_GROUPS in folded else DeviceScope(folded)


class Rule(enum.Enum):
    """Which check refused a request: shown to the person and written to the audit trail."""

    WORKSPACE = "workspace"
    EXTERNAL = "external"
    CHANNEL = "channel"
    USER = "user"
    MEMBERSHIP = "membership"
    DEVICE_GROUPS = "device_groups"


@dataclass(frozen=True, slots=True)
class Refusal:
    rule: Rule
    reason: str  # for the person who asked; no ids they could not already see


@dataclass(frozen=True, slots=True)
class GroupPolicy:
    """Device groups per channel id (C…/G…/D…, `dm`, `default`) and per user-group id (S…)."""

    channels: Mapping[str, DeviceScope] = field(default_factory=dict)
    usergroups: Mapping[str, DeviceScope] = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        return bool(self.channels or self.usergroups)

    def channel_scope(self, requester: Requester) -> DeviceScope:
        if not self.channels:
            return EVERY_DEVICE
        entry = self.channels.get(requester.channel_id)
        if entry is None and requester.in_dm:
            entry = self.channels.get(DM_KEY)
        if entry is None:
            entry = self.channels.get(DEFAULT_KEY)
        return entry if entry is not None else NO_DEVICE


def parse_group_policy(text: str) -> GroupPolicy:
    """`C0INCIDENT=*;C0HELPDESK=Workstations,Laptops;S0SOC=*` (`;` or new lines, `#` comments).

    Text without `=` is a path to a file holding the same rules, one per line.
    """
    where = ""  # inline rules; a file's errors name the file
    if "=" not in text:
        path = Path(text.strip())
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"cannot read the policy file {str(path)!r} ({exc.__class__.__name__})") from None
        where = f"{path}: "
    channels: dict[str, DeviceScope] = {}
    usergroups: dict[str, DeviceScope] = {}
    for number, line in enumerate(re.split(r"[;\n]", text), start=1):
        rule = line.split("#", 1)[0].strip()
        if not rule:
            continue
        key, equals, value = (part.strip() for part in rule.partition("="))
        names = [name.strip() for name in value.split(",")]
        if not equals or not all(names):
            raise PolicyError(f"{where}rule {number} {rule[:80]!r} is not KEY=group[,group…] or KEY=*")
        if any(len(name) > MAX_GROUP_NAME for name in names):
            raise PolicyError(f"{where}rule {number} has a group name over {MAX_GROUP_NAME} characters")
        lowered = key.lower()
        if lowered in (DM_KEY, DEFAULT_KEY):
            key = lowered
        elif not (_CHANNEL_ID.fullmatch(key) or _USERGROUP_ID.fullmatch(key)):
            raise PolicyError(
                f"{where}rule {number} key {key[:40]!r} is not a channel id (C…/G…/D…), "
                "a user-group id (S…), 'dm' or 'default'"
            )
        target = usergroups if key.startswith("S") else channels
        if key in target:
            raise PolicyError(f"{where}{key} appears twice")
        target[key] = _scope(names)
    if not channels and not usergroups:
        raise PolicyError(f"{where}no rules")
    return GroupPolicy(channels, usergroups)


def parse_id_list(text: str, kind: str) -> frozenset[str]:
    """A comma-separated allow-list of Slack ids of one kind ('channel', 'user', 'usergroup')."""
    pattern = {"channel": _CHANNEL_ID, "user": _USER_ID, "usergroup": _USERGROUP_ID}[kind]
    ids = [item.strip() for item in text.split(",") if item.strip()]
    for item in ids:
        if not (pattern.fullmatch(item) or (kind == "channel" and item.lower() == DM_KEY)):
            raise PolicyError(f"{item[:40]!r} is not a Slack {kind} id")
    if not ids:
        raise PolicyError(f"no {kind} ids")
    return frozenset(item.lower() if item.lower() == DM_KEY else item for item in ids)


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """Everything that decides whether a request is answered and what it may see. Unset parts allow."""

    channels: frozenset[str] | None = None
    users: frozenset[str] | None = None
    usergroups: frozenset[str] | None = None
    groups: GroupPolicy = field(default_factory=GroupPolicy)
    allow_external: bool = False
    contact: str = DEFAULT_CONTACT  # whom a refused person should ask (BOT_ACCESS_CONTACT)

    @property
    def usergroup_ids(self) -> frozenset[str]:
        """Every user group a check may read: the allow-list's and the group policy's."""
        return (self.usergroups or frozenset()) | frozenset(self.groups.usergroups)

    def check(
        self, requester: Requester, installation: Installation, memberships: Memberships
    ) -> Refusal | DeviceScope:
        """A `Refusal` naming the rule, or the `DeviceScope` the request may see."""
        ask = f"Ask {self.contact} if you need access."
        if not installation.owns(requester.team_id, requester.enterprise_id):
            return Refusal(Rule.WORKSPACE, "This bot answers only in the workspace it is installed in.")
        if not installation.same_organisation(requester) and not self.allow_external:
            return Refusal(Rule.EXTERNAL, "This bot does not answer people from other organisations.")
        if self.channels is not None and not self._channel_listed(requester):
            return Refusal(Rule.CHANNEL, f"This bot is not enabled in {_place(requester)}. {ask}")
        try:
            if not self._person_listed(requester.user_id, memberships):
                return Refusal(Rule.USER, f"You are not on this bot's list of people who may use it. {ask}")
            scope = self._scope(requester, memberships)
        except MembershipUnavailable:
            return Refusal(Rule.MEMBERSHIP, "The bot could not check your user groups in Slack. Try again shortly.")
        if scope.empty:
            return Refusal(Rule.DEVICE_GROUPS, f"No device groups are open to you in {_place(requester)}. {ask}")
        return scope

    def _channel_listed(self, requester: Requester) -> bool:
        listed = self.channels or frozenset()
        return requester.channel_id in listed or (requester.in_dm and DM_KEY in listed)

    def _person_listed(self, user_id: str, memberships: Memberships) -> bool:
        if self.users is None and self.usergroups is None:
            return True
        return person_listed(user_id, self.users or frozenset(), self.usergroups or frozenset(), memberships)

    def _scope(self, requester: Requester, memberships: Memberships) -> DeviceScope:
        scope = self.groups.channel_scope(requester)
        if self.groups.usergroups:
            personal = NO_DEVICE
            for group, allowed in sorted(self.groups.usergroups.items()):
                if requester.user_id in memberships.members(group):
                    personal = personal | allowed
            scope = scope & personal
        return scope


def _place(requester: Requester) -> str:
    return "direct messages" if requester.in_dm else "this channel"
