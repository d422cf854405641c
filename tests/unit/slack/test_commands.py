"""What people type in Slack, parsed into commands (`bot.slack.commands`)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.alerts.query import MAX_QUERY_LENGTH, AlertFilters, DeviceQuery, QueryError, parse_query
from bot.defender.models import AlertStatus, Severity
from bot.defender.refs import DeviceRef, RefKind
from bot.slack.commands import Help, Invalid, ListWatches, Lookup, StartWatch, StopWatch, message_text, parse_command
from bot.watch.terms import DEFAULT_DURATION, MAX_DURATION

MID = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
HOST = "ws-fin-014.contoso.local"
NOT_A_DEVICE = "not a machine id (40 hex characters) or a hostname (letters, digits, '-', '_' and '.')"


def host(value: str) -> DeviceRef:
    return DeviceRef(RefKind.HOSTNAME, value)


def machine(value: str = MID) -> DeviceRef:
    return DeviceRef(RefKind.MACHINE_ID, value)


# parse_command ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "help", "HELP", "Help me please", "?", "? ws1", "usage", "Usage"])
def test_help(text: str) -> None:
    assert parse_command(text) == Help()


def query(device: DeviceRef, **filters: Any) -> DeviceQuery:
    return DeviceQuery(device, AlertFilters(**filters))


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("watch ws-fin-014", StartWatch(query(host("ws-fin-014")), DEFAULT_DURATION, "ws-fin-014")),
        ("WATCH ws-fin-014 for:2h", StartWatch(query(host("ws-fin-014")), timedelta(hours=2), "ws-fin-014")),
        ("watch for:30m ws-fin-014", StartWatch(query(host("ws-fin-014")), timedelta(minutes=30), "ws-fin-014")),
        ("Watch ws-fin-014 FOR:7d", StartWatch(query(host("ws-fin-014")), MAX_DURATION, "ws-fin-014")),
        ("watch ws-fin-014 for:1w", StartWatch(query(host("ws-fin-014")), timedelta(weeks=1), "ws-fin-014")),
        (
            f"watch {MID} severity:high status:new for:90m",
            StartWatch(
                query(machine(), severities=frozenset({Severity.HIGH}), statuses=frozenset({AlertStatus.NEW})),
                timedelta(minutes=90),
                f"{MID} severity:high status:new",
            ),
        ),
        ("alerts watch ws1", StartWatch(query(host("ws1")), DEFAULT_DURATION, "ws1")),
        ("Unwatch ws-fin-014", StopWatch(query(host("ws-fin-014")), "ws-fin-014")),
        (f"unWATCH {HOST}", StopWatch(query(host(HOST)), HOST)),
        (f"unwatch {MID.upper()}", StopWatch(query(machine()), MID.upper())),
        ("watches", ListWatches()),
        ("  WATCHES  ", ListWatches()),
        ("watches ws-fin-014", ListWatches()),
    ],
)
def test_watch_commands(text: str, command: object) -> None:
    assert parse_command(text) == command


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("watch", "name a device: a machine id or a hostname"),
        ("watch for:2h", "name a device: a machine id or a hostname"),
        ("unwatch", "name a device: a machine id or a hostname"),
        ("watch ws1 for:0", "'for:0' is not a duration like 30m, 8h or 2d"),
        ("watch ws1 for:", "'for:' is not a duration like 30m, 8h or 2d"),
        ("watch ws1 for:soon", "'for:soon' is not a duration like 30m, 8h or 2d"),
        ("watch ws1 for:2h30m", "'for:2h30m' is not a duration like 30m, 8h or 2d"),
        ("watch ws1 for:0m", "'for:' must be longer than zero"),
        ("watch ws1 for:8d", "a watch lasts at most 7d"),
        ("watch ws1 for:169h", "a watch lasts at most 7d"),
        ("watch ws1 for:2w", "a watch lasts at most 7d"),
        ("watch ws1 for:365d", "a watch lasts at most 7d"),
        ("watch ws1 for:1h for:2h", "'for:' is given twice"),
        ("watch ws1 ws2", "one device per lookup: got 'ws1' and 'ws2'"),
        ("watch ws1 colour:red", "unknown filter 'colour:' (use severity:, status: or since:)"),
        ("unwatch ws1 for:2h", "unknown filter 'for:' (use severity:, status: or since:)"),
        ("watch <!channel>", "'<!channel>': " + NOT_A_DEVICE),
    ],
)
def test_invalid_watch_commands_name_the_problem(text: str, message: str) -> None:
    command = parse_command(text)
    assert isinstance(command, Invalid)
    assert str(command.error) == message
    assert command.text == text


@pytest.mark.parametrize("text", ["watching ws1", "watchers", "ws1 watch", "unwatched ws1"])
def test_watch_words_only_as_the_first_whole_word(text: str) -> None:
    assert not isinstance(parse_command(text), StartWatch | StopWatch | ListWatches)


@pytest.mark.parametrize(
    ("text", "query", "lookup_text"),
    [
        ("ws-fin-014", DeviceQuery(host("ws-fin-014"), AlertFilters()), "ws-fin-014"),
        ("alerts ws-fin-014", DeviceQuery(host("ws-fin-014"), AlertFilters()), "ws-fin-014"),
        ("ALERTS  WS-FIN-014 ", DeviceQuery(host("ws-fin-014"), AlertFilters()), "WS-FIN-014 "),
        (f"  {MID.upper()}  ", DeviceQuery(machine(), AlertFilters()), f"  {MID.upper()}  "),
        (
            f"alerts {HOST} severity:high,medium status:new,inprogress since:7d",
            DeviceQuery(
                host(HOST),
                AlertFilters(
                    frozenset({Severity.HIGH, Severity.MEDIUM}),
                    frozenset({AlertStatus.NEW, AlertStatus.IN_PROGRESS}),
                    timedelta(days=7),
                ),
            ),
            f"{HOST} severity:high,medium status:new,inprogress since:7d",
        ),
        (
            f"since:24h {MID} SEVERITY:Info",
            DeviceQuery(machine(), AlertFilters(frozenset({Severity.INFORMATIONAL}), since=timedelta(hours=24))),
            f"since:24h {MID} SEVERITY:Info",
        ),
        (
            "ws1 status:resolved",
            DeviceQuery(host("ws1"), AlertFilters(statuses=frozenset({AlertStatus.RESOLVED}))),
            "ws1 status:resolved",
        ),
        ("alerts alerts", DeviceQuery(host("alerts"), AlertFilters()), "alerts"),
    ],
)
def test_lookups(text: str, query: DeviceQuery, lookup_text: str) -> None:
    assert parse_command(text) == Lookup(query, lookup_text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ws1 ws2", "one device per lookup: got 'ws1' and 'ws2'"),
        ("ws1 colour:red", "unknown filter 'colour:' (use severity:, status: or since:)"),
        (
            "ws1 severity:critical",
            "unknown severity 'critical' (use high, info, informational, low, medium, unspecified)",
        ),
        ("ws1 status:closed", "unknown status 'closed' (use inprogress, new, resolved)"),
        ("ws1 severity:", "'severity:' has an empty value"),
        ("ws1 severity:high severity:low", "'severity:' is given twice"),
        ("ws1 since:999d", "'since:' can reach back at most 180d (Defender's retention)"),
        ("ws1 since:0m", "'since:' must be longer than zero"),
        ("ws1 since:1y", "'since:1y' is not a duration like 30m, 24h, 7d or 2w"),
        ("severity:high", "name a device: a machine id or a hostname"),
        ("alerts", "name a device: a machine id or a hostname"),
        (
            "bad/host",
            "'bad/host': " + NOT_A_DEVICE,
        ),
        (
            "<!channel>",
            "'<!channel>': " + NOT_A_DEVICE,
        ),
        ("ws1 " + "x" * MAX_QUERY_LENGTH, f"the request is longer than {MAX_QUERY_LENGTH} characters"),
    ],
)
def test_invalid_input_names_the_problem(text: str, message: str) -> None:
    command = parse_command(text)
    assert isinstance(command, Invalid)
    assert isinstance(command.error, QueryError)
    assert str(command.error) == message
    assert command.text == ("" if text == "alerts" else text)


# message_text ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("<@U0DEVALERTS> ws-fin-014", "ws-fin-014"),
        ("<@U0DEVALERTS|device-alerts> ws-fin-014", "ws-fin-014"),
        ("<@U0DEVALERTS>ws-fin-014", "ws-fin-014"),
        ("ws-fin-014 <@U0DEVALERTS>", "ws-fin-014"),
        (f"<@U0DEVALERTS> <http://{HOST}|{HOST}> severity:high", f"{HOST} severity:high"),
        (f"<@U0DEVALERTS> <http://{HOST}>", HOST),
        (f"<https://{HOST}|{HOST}>", HOST),
        ("<mailto:bob@contoso.com|bob@contoso.com>", "bob@contoso.com"),
        ("<mailto:bob@contoso.com>", "bob@contoso.com"),
        ("ws1 &lt;b&gt; &amp; more", "ws1 <b> & more"),
        ("&amp;lt;", "&lt;"),
        ("  \n <@U0DEVALERTS>   ws1   severity:high  \t", "ws1   severity:high"),
        ("<@U0DEVALERTS>", ""),
        ("", ""),
    ],
)
def test_message_text_undoes_slack_formatting(raw: str, text: str) -> None:
    assert message_text(raw) == text


@pytest.mark.parametrize(
    ("raw", "command"),
    [
        ("<@U0DEVALERTS> ws-fin-014", Lookup(DeviceQuery(host("ws-fin-014"), AlertFilters()), "ws-fin-014")),
        (
            f"<@U0DEVALERTS|device-alerts> alerts <http://{HOST}|{HOST}> status:new",
            Lookup(DeviceQuery(host(HOST), AlertFilters(statuses=frozenset({AlertStatus.NEW}))), f"{HOST} status:new"),
        ),
        ("<@U0DEVALERTS>", Help()),
        ("<@U0DEVALERTS> help", Help()),
        (
            "<@U0DEVALERTS> Watch <http://ws1.contoso.local> for:1h",
            StartWatch(query(host("ws1.contoso.local")), timedelta(hours=1), "ws1.contoso.local"),
        ),
        ("<@U0DEVALERTS|device-alerts> unwatch ws1", StopWatch(query(host("ws1")), "ws1")),
        ("<@U0DEVALERTS> watches", ListWatches()),
    ],
)
def test_mentions_become_commands(raw: str, command: object) -> None:
    assert parse_command(message_text(raw)) == command


def test_typed_brackets_are_refused_not_unwrapped() -> None:
    # Someone literally typing `<!channel>` reaches the bot as entities: decoded, then refused by the grammar.
    command = parse_command(message_text("&lt;!channel&gt;"))
    assert isinstance(command, Invalid)
    assert command.text == "<!channel>"
    command = parse_command(message_text("<@U0DEVALERTS> <mailto:bob@contoso.com|bob@contoso.com>"))
    assert isinstance(command, Invalid)
    assert "'bob@contoso.com': not a machine id" in str(command.error)


_SLACK_FRAGMENTS = [
    "<@U0DEVALERTS>",
    "<@U0DEVALERTS|device-alerts>",
    "<@",
    "|",
    ">",
    "<",
    "<http://",
    "<https://",
    "<mailto:",
    "&amp;",
    "&lt;",
    "&gt;",
    "&#60;",
    "&#x3c;",
    "&",
    ";",
    "&copy;",
    "<!channel>",
    "<#C1|x>",
    "ws-fin-014",
    ".contoso.local",
    MID,
    " ",
    "\n",
    "\t",
    "\u00a0",
    "\u2028",
    "severity:",
    "status:",
    "since:",
    "high",
    "new",
    "7d",
    "999999w",
    ",",
    ":",
    "alerts",
    "help",
    "watch",
    "unwatch",
    "watches",
    "for:",
    "for:8h",
    "for:8d",
    "?",
    "é",
    "🙂",
    "\x00",
    "\u202e",
]
_slack_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(_SLACK_FRAGMENTS), max_size=60).map("".join),
    st.tuples(st.sampled_from(["a ", "&amp;", "<@U1>", " "]), st.integers(0, 1500)).map(lambda p: p[0] * p[1]),
)


@settings(max_examples=500, deadline=None)
@given(_slack_text)
def test_parse_command_never_raises_on_any_message(raw: str) -> None:
    command = parse_command(message_text(raw))
    assert isinstance(command, Help | Lookup | StartWatch | StopWatch | ListWatches | Invalid)
    if isinstance(command, StartWatch):
        assert timedelta(0) < command.duration <= MAX_DURATION
        assert parse_query(command.text) == command.query
    if isinstance(command, Lookup):
        assert len(command.text) <= MAX_QUERY_LENGTH
        assert parse_query(command.text) == command.query
        device = command.query.device
        assert re.fullmatch(r"[0-9a-f]{40}|[a-z0-9][a-z0-9_-]*(?:\.[a-z0-9_-]+)*", device.value), device.value
    if isinstance(command, Invalid):
        assert str(command.error)


_labels = st.from_regex(r"[a-z0-9][a-z0-9-]{0,14}", fullmatch=True)


@given(st.lists(_labels, min_size=1, max_size=4).map(".".join), st.booleans())
def test_auto_linked_hostnames_come_back_as_typed(name: str, labelled: bool) -> None:
    link = f"<http://{name}|{name}>" if labelled else f"<http://{name}>"
    command = parse_command(message_text(f"<@U0DEVALERTS> {link} since:2w"))
    assert command == Lookup(DeviceQuery(host(name), AlertFilters(since=timedelta(weeks=2))), f"{name} since:2w")
