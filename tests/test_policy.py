"""The access-control building blocks on their own: policy parsing and decisions, rate limits, button seals,
the audit log, and the configuration that sets them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from bot.access.audit import Action, AuditLog, Outcome, Result
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
from bot.config import ConfigError, SlackMode, load_slack_settings
from bot.slack.actions import ButtonSeal, InvalidButton
from bot.state.limits import RequestLimiter
from tests.support import FakeClock

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


# Rate limits --------------------------------------------------------------------------------------------------


def test_a_user_gets_a_minute_of_burst_then_the_rate() -> None:
    clock = FakeClock()
    limiter = RequestLimiter(user_per_minute=20, channel_per_minute=0, clock=clock)
    assert [limiter.admit("T", "C", "U0A") for _ in range(20)] == [None] * 20
    slow = limiter.admit("T", "C", "U0A")
    assert slow is not None
    assert (slow.scope, round(slow.retry_after)) == ("you", 3)
    assert slow.message == "Slow down: You have sent more than 20 requests a minute. Try again in 3 s."
    assert limiter.admit("T", "C", "U0B") is None  # someone else is not held back
    clock.advance(3)
    assert limiter.admit("T", "C", "U0A") is None
    assert limiter.admit("T", "C", "U0A") is not None


def test_the_channel_limit_holds_many_people_together() -> None:
    limiter = RequestLimiter(user_per_minute=100, channel_per_minute=3, clock=FakeClock())
    assert [limiter.admit("T", "C0BUSY", f"U{n}") is None for n in range(4)] == [True, True, True, False]
    assert limiter.admit("T", "C0CALM", "U9") is None


def test_a_refused_request_uses_no_allowance() -> None:
    """Over the channel limit, the person's own allowance is untouched."""
    clock = FakeClock()
    limiter = RequestLimiter(user_per_minute=2, channel_per_minute=1, clock=clock)
    assert limiter.admit("T", "C", "U0A") is None
    assert limiter.admit("T", "C", "U0A") is not None  # the channel is out
    assert limiter.admit("T", "C2", "U0A") is None  # the person still had one left


def test_zero_switches_a_limit_off() -> None:
    limiter = RequestLimiter(user_per_minute=0, channel_per_minute=0, clock=FakeClock())
    assert all(limiter.admit("T", "C", "U") is None for _ in range(1000))


# Button seals -------------------------------------------------------------------------------------------------


def test_a_sealed_value_opens_and_any_change_breaks_it() -> None:
    seal = ButtonSeal.from_secret("secret-one")
    value = "c7663fe2de4691490a39131d227c25d9dc2bc9d6 severity:high"
    sealed = seal.seal(value)
    assert seal.open(sealed) == value
    for forged in (
        value,
        sealed.replace("severity:high", "severity:low"),
        sealed[:-1],
        "A" + sealed[1:],
        ButtonSeal.from_secret("secret-two").seal(value),
        "",
        ".",
        sealed + "x" * 2000,
    ):
        with pytest.raises(InvalidButton):
            seal.open(forged)


def test_the_seal_key_is_not_the_signing_secret_and_never_prints() -> None:
    seal = ButtonSeal.from_secret("signing-secret-value")
    assert "signing-secret-value" not in repr(seal)
    with pytest.raises(ValueError, match="16 bytes"):
        ButtonSeal(b"short")


# Audit log ----------------------------------------------------------------------------------------------------


def test_audit_lines_are_json_with_ids_and_outcome() -> None:
    stream = io.StringIO()
    log = AuditLog(stream)
    log.record(Action.LOOKUP, ALICE, Outcome(Result.OK, "a" * 40, from_cache=True))
    log.record(Action.BUTTON_WATCH, ALICE, Outcome(Result.REFUSED, reason="channel"), defender_calls=0)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["audit"], first["device"], first["result"], first["from_cache"]) == ("lookup", "a" * 40, "ok", True)
    assert (first["team"], first["channel"], first["user"]) == ("T0HOME", "C0INCIDENT", "U0ALICE")
    assert (second["audit"], second["result"], second["reason"], second["defender_call"]) == (
        "button_watch",
        "refused",
        "channel",
        False,
    )


def test_audit_targets(tmp_path: Path) -> None:
    assert AuditLog.open("off")._stream is None
    path = tmp_path / "audit.jsonl"
    log = AuditLog.open(str(path))
    log.record(Action.HELP, ALICE, Outcome(Result.OK))
    log.close()
    assert json.loads(path.read_text())["audit"] == "help"
    assert path.stat().st_mode & 0o777 == 0o600


# Configuration ------------------------------------------------------------------------------------------------

BASE = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}


def test_access_settings_default_to_open_with_limits_and_stderr_audit() -> None:
    settings = load_slack_settings(SlackMode.HTTP, BASE, dotenv_path=None)
    assert settings.access == AccessPolicy()
    assert (settings.user_rate_per_minute, settings.channel_rate_per_minute, settings.audit_log) == (20, 60, "stderr")


def test_access_settings_are_read(tmp_path: Path) -> None:
    env = {
        **BASE,
        "BOT_ALLOWED_CHANNELS": "C0INCIDENT,dm",
        "BOT_ALLOWED_USERS": "U0ALICE",
        "BOT_ALLOWED_USERGROUPS": "S0SOC",
        "BOT_DEVICE_GROUP_POLICY": "C0INCIDENT=*",
        "BOT_ALLOW_EXTERNAL": "TRUE",
        "BOT_ACCESS_CONTACT": "#soc",
        "BOT_USER_RATE_PER_MINUTE": "5",
        "BOT_CHANNEL_RATE_PER_MINUTE": "0",
        "BOT_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
    }
    settings = load_slack_settings(SlackMode.HTTP, env, dotenv_path=None)
    access = settings.access
    assert (access.channels, access.users, access.usergroups) == ({"C0INCIDENT", "dm"}, {"U0ALICE"}, {"S0SOC"})
    assert (access.allow_external, access.contact, access.groups.configured) == (True, "#soc", True)
    assert (settings.user_rate_per_minute, settings.channel_rate_per_minute) == (5, 0)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BOT_ALLOWED_CHANNELS", "#incident", "BOT_ALLOWED_CHANNELS: '#incident' is not a Slack channel id"),
        ("BOT_ALLOWED_USERS", "alice", "BOT_ALLOWED_USERS: 'alice' is not a Slack user id"),
        ("BOT_ALLOWED_USERGROUPS", "soc", "BOT_ALLOWED_USERGROUPS: 'soc' is not a Slack usergroup id"),
        ("BOT_DEVICE_GROUP_POLICY", "x=y", "BOT_DEVICE_GROUP_POLICY: rule 1 key 'x' is not a channel id"),
        ("BOT_ALLOW_EXTERNAL", "yes", "BOT_ALLOW_EXTERNAL: expected true | false"),
        ("BOT_USER_RATE_PER_MINUTE", "-1", "BOT_USER_RATE_PER_MINUTE: expected a whole number"),
        ("BOT_AUDIT_LOG", "/no/such/dir/audit.jsonl", "BOT_AUDIT_LOG: expected stderr, off or a path"),
    ],
)
def test_bad_access_settings_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_slack_settings(SlackMode.HTTP, {**BASE, name: value}, dotenv_path=None)
    assert str(caught.value).startswith(message), str(caught.value)
