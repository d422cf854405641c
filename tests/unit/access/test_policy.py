"""The access policy on its own (`bot.access.policy`): parsing group policies and id lists, and its decisions
for workspaces, guests, users, usergroups, channels and device-group scopes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.access.policy import (
    AccessPolicy,
    Installation,
    MembershipUnavailable,
    PolicyError,
    Refusal,
    Requester,
    Rule,
    parse_group_policy,
    parse_id_list,
)
from bot.alerts.scope import EVERY_DEVICE, DeviceScope

HOME = Installation("T0HOME")
ALICE = Requester("T0HOME", "C0INCIDENT", "U0ALICE")


class Groups:
    def __init__(self, **members: set[str]) -> None:
        self._members = members
        self.asked: list[str] = []

    def members(self, usergroup_id: str) -> frozenset[str]:
        self.asked.append(usergroup_id)
        if usergroup_id not in self._members:
            raise MembershipUnavailable("no_such_subteam")
        return frozenset(self._members[usergroup_id])


NOBODY = Groups()


# Group policy -------------------------------------------------------------------------------------------------


def test_group_policy_reads_channels_usergroups_dm_and_default() -> None:
    policy = parse_group_policy(
        "C0INCIDENT=*; C0HELPDESK=Workstations, Laptops\nS0SOC=Servers # the SOC\ndm=*;DEFAULT=Mobile"
    )
    assert policy.channels["C0INCIDENT"] == EVERY_DEVICE
    assert policy.channels["C0HELPDESK"] == DeviceScope(frozenset({"workstations", "laptops"}))
    assert policy.usergroups == {"S0SOC": DeviceScope(frozenset({"servers"}))}
    assert set(policy.channels) == {"C0INCIDENT", "C0HELPDESK", "dm", "default"}


def test_group_policy_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.conf"
    path.write_text("# who sees what\nC0INCIDENT=*\n\nC0HELPDESK=Workstations\n")
    assert set(parse_group_policy(str(path)).channels) == {"C0INCIDENT", "C0HELPDESK"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("C0INCIDENT", "cannot read the policy file"),
        ("C0X=", "is not KEY=group"),
        ("C0X=a,,b", "is not KEY=group"),
        ("#incident=*", "no rules"),
        ("general=*", "is not a channel id"),
        ("U0ALICE=*", "is not a channel id"),
        ("C0X=*;C0X=Servers", "C0X appears twice"),
        (f"C0X={'g' * 300}", "over 256 characters"),
        ("  ;  ", "cannot read the policy file"),
    ],
)
def test_bad_group_policies_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_group_policy(text)


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("C0A, G0B ,dm", "channel", {"C0A", "G0B", "dm"}),
        ("U0A,W0B", "user", {"U0A", "W0B"}),
        ("S0A", "usergroup", {"S0A"}),
    ],
)
def test_id_lists(text: str, kind: str, expected: set[str]) -> None:
    assert parse_id_list(text, kind) == expected


@pytest.mark.parametrize(("text", "kind"), [("#general", "channel"), ("alice", "user"), ("C0A", "user"), (",", "user")])
def test_bad_id_lists(text: str, kind: str) -> None:
    with pytest.raises(PolicyError):
        parse_id_list(text, kind)


# Decisions ----------------------------------------------------------------------------------------------------


def test_an_unset_policy_allows_everything_from_the_home_workspace() -> None:
    assert AccessPolicy().check(ALICE, HOME, NOBODY) == EVERY_DEVICE


@pytest.mark.parametrize(
    ("installation", "team", "enterprise", "allowed"),
    [
        (Installation("T0HOME"), "T0HOME", None, True),
        (Installation("T0HOME"), "T0OTHER", None, False),
        (Installation("T0HOME", "E0ORG"), "T0HOME", "E0ORG", True),
        (Installation("T0HOME", "E0ORG"), "T0HOME", "E0OTHER", False),
        (Installation(None, "E0ORG", enterprise_install=True), "T0ANY", "E0ORG", True),
        (Installation(None, "E0ORG", enterprise_install=True), "T0ANY", "E0OTHER", False),
        (Installation(None, "E0ORG", enterprise_install=True), "T0ANY", None, False),
    ],
)
def test_workspace_and_enterprise_checks(
    installation: Installation, team: str, enterprise: str | None, allowed: bool
) -> None:
    decision = AccessPolicy().check(Requester(team, "C0X", "U0A", enterprise), installation, NOBODY)
    assert (decision == EVERY_DEVICE) is allowed
    if not allowed:
        assert isinstance(decision, Refusal)
        assert decision.rule is Rule.WORKSPACE


def test_slack_connect_guests_are_refused_unless_allowed() -> None:
    guest = Requester("T0HOME", "C0SHARED", "U0GUEST", user_team_id="T0PARTNER")
    refusal = AccessPolicy().check(guest, HOME, NOBODY)
    assert isinstance(refusal, Refusal)
    assert refusal.rule is Rule.EXTERNAL
    assert AccessPolicy(allow_external=True).check(guest, HOME, NOBODY) == EVERY_DEVICE


def test_users_and_usergroups_combine_as_either() -> None:
    policy = AccessPolicy(users=frozenset({"U0BOB"}), usergroups=frozenset({"S0SOC"}))
    groups = Groups(S0SOC={"U0ALICE"})
    assert policy.check(ALICE, HOME, groups) == EVERY_DEVICE
    assert policy.check(Requester("T0HOME", "C0X", "U0BOB"), HOME, groups) == EVERY_DEVICE
    refusal = policy.check(Requester("T0HOME", "C0X", "U0EVE"), HOME, groups)
    assert isinstance(refusal, Refusal)
    assert refusal.rule is Rule.USER


def test_listed_users_need_no_membership_lookup() -> None:
    groups = Groups(S0SOC=set())
    AccessPolicy(users=frozenset({"U0ALICE"}), usergroups=frozenset({"S0SOC"})).check(ALICE, HOME, groups)
    assert groups.asked == []


def test_channel_and_usergroup_scopes_intersect() -> None:
    policy = AccessPolicy(groups=parse_group_policy("C0HELPDESK=Workstations,Laptops;S0SOC=Laptops,Servers"))
    groups = Groups(S0SOC={"U0ALICE"})
    scope = policy.check(Requester("T0HOME", "C0HELPDESK", "U0ALICE"), HOME, groups)
    assert scope == DeviceScope(frozenset({"laptops"}))
    assert isinstance(scope, DeviceScope)
    assert scope.allows("LAPTOPS")
    assert not scope.allows("Servers")
    assert not scope.allows(None)  # a device in no group is for unrestricted scopes only


def test_membership_of_several_groups_unites_their_scopes() -> None:
    policy = AccessPolicy(groups=parse_group_policy("S0A=Servers;S0B=Laptops;S0C=*"))
    assert policy.check(ALICE, HOME, Groups(S0A={"U0ALICE"}, S0B={"U0ALICE"}, S0C=set())) == DeviceScope(
        frozenset({"servers", "laptops"})
    )
    assert policy.check(ALICE, HOME, Groups(S0A={"U0ALICE"}, S0B=set(), S0C={"U0ALICE"})) == EVERY_DEVICE


@pytest.mark.parametrize(
    ("policy_text", "channel", "expected"),
    [
        ("C0INCIDENT=*", "C0OTHER", None),
        ("C0INCIDENT=*;default=Mobile", "C0OTHER", DeviceScope(frozenset({"mobile"}))),
        ("dm=Laptops;default=Mobile", "D0ALICE", DeviceScope(frozenset({"laptops"}))),
        ("default=Mobile", "D0ALICE", DeviceScope(frozenset({"mobile"}))),
    ],
)
def test_channels_without_an_entry(policy_text: str, channel: str, expected: DeviceScope | None) -> None:
    decision = AccessPolicy(groups=parse_group_policy(policy_text)).check(
        Requester("T0HOME", channel, "U0ALICE"), HOME, NOBODY
    )
    if expected is None:
        assert isinstance(decision, Refusal)
        assert decision.rule is Rule.DEVICE_GROUPS
    else:
        assert decision == expected


def test_unreadable_membership_refuses_rather_than_allows() -> None:
    refusal = AccessPolicy(usergroups=frozenset({"S0GONE"})).check(ALICE, HOME, NOBODY)
    assert isinstance(refusal, Refusal)
    assert refusal.rule is Rule.MEMBERSHIP


def test_refusals_name_the_contact() -> None:
    refusal = AccessPolicy(channels=frozenset({"C0SOC"}), contact="#soc-platform").check(ALICE, HOME, NOBODY)
    assert isinstance(refusal, Refusal)
    assert refusal.reason == "This bot is not enabled in this channel. Ask #soc-platform if you need access."
