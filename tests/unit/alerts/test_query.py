"""The lookup grammar: `<machineId|hostname> [severity:…] [status:…] [since:…]`, strict and total."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from bot.alerts.query import (
    MAX_QUERY_LENGTH,
    MAX_SINCE,
    USAGE,
    AlertFilters,
    DeviceQuery,
    QueryError,
    format_duration,
    parse_query,
    parse_since,
)
from bot.defender.models import Alert, AlertStatus, Severity, parse_alert
from bot.defender.refs import DeviceRef, RefKind

HEX40 = "111e6dd8c833c8a052ea231ec1b19adaf497b625"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def make_alert(**fields: Any) -> Alert:
    return parse_alert({"id": "da1", **fields})


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Device only ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("ws-fin-014", DeviceRef(RefKind.HOSTNAME, "ws-fin-014")),
        ("  WS-FIN-014  ", DeviceRef(RefKind.HOSTNAME, "ws-fin-014")),
        ("ws-fin-014.corp.contoso.com.", DeviceRef(RefKind.HOSTNAME, "ws-fin-014.corp.contoso.com")),
        (HEX40, DeviceRef(RefKind.MACHINE_ID, HEX40)),
        (HEX40.upper(), DeviceRef(RefKind.MACHINE_ID, HEX40)),
        ("\tws1\n", DeviceRef(RefKind.HOSTNAME, "ws1")),
    ],
)
def test_device_only(text: str, ref: DeviceRef) -> None:
    query = parse_query(text)
    assert query == DeviceQuery(ref, AlertFilters())
    assert query.filters.is_empty is True
    assert query.filters.describe() == ""


# Filters -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("severity:high", {Severity.HIGH}),
        ("severity:medium", {Severity.MEDIUM}),
        ("severity:low", {Severity.LOW}),
        ("severity:informational", {Severity.INFORMATIONAL}),
        ("severity:info", {Severity.INFORMATIONAL}),
        ("severity:unspecified", {Severity.UNSPECIFIED}),
        ("severity:high,medium", {Severity.HIGH, Severity.MEDIUM}),
        ("severity:high,high", {Severity.HIGH}),
        ("severity:info,informational,low", {Severity.INFORMATIONAL, Severity.LOW}),
        ("SEVERITY:HIGH,Medium", {Severity.HIGH, Severity.MEDIUM}),
        ("Severity:Info", {Severity.INFORMATIONAL}),
    ],
)
def test_severity_filter(option: str, expected: set[Severity]) -> None:
    query = parse_query(f"ws1 {option}")
    assert query.filters.severities == frozenset(expected)
    assert query.filters.statuses == frozenset()
    assert query.filters.since is None
    assert query.filters.is_empty is False


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("status:new", {AlertStatus.NEW}),
        ("status:inprogress", {AlertStatus.IN_PROGRESS}),
        ("status:in-progress", {AlertStatus.IN_PROGRESS}),
        ("status:in_progress", {AlertStatus.IN_PROGRESS}),
        ("status:resolved", {AlertStatus.RESOLVED}),
        ("status:new,inprogress", {AlertStatus.NEW, AlertStatus.IN_PROGRESS}),
        ("status:new,in-progress,resolved", {AlertStatus.NEW, AlertStatus.IN_PROGRESS, AlertStatus.RESOLVED}),
        ("STATUS:In-Progress", {AlertStatus.IN_PROGRESS}),
        ("Status:NEW", {AlertStatus.NEW}),
    ],
)
def test_status_filter(option: str, expected: set[AlertStatus]) -> None:
    query = parse_query(f"{option} ws1")
    assert query.device == DeviceRef(RefKind.HOSTNAME, "ws1")
    assert query.filters.statuses == frozenset(expected)
    assert query.filters.severities == frozenset()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("1m", timedelta(minutes=1)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("180d", timedelta(days=180)),
        ("4320h", timedelta(days=180)),
        ("25w", timedelta(weeks=25)),
        ("9999m", timedelta(minutes=9999)),
        ("007d", timedelta(days=7)),
        ("7D", timedelta(days=7)),
        ("12H", timedelta(hours=12)),
    ],
)
def test_since_units(value: str, expected: timedelta) -> None:
    assert parse_since(value) == expected
    assert parse_query(f"ws1 since:{value}").filters.since == expected
    assert parse_query(f"ws1 SINCE:{value}").filters.since == expected


@pytest.mark.parametrize("value", ["0m", "0d", "000h", "0w"])
def test_since_zero_is_refused(value: str) -> None:
    with pytest.raises(QueryError, match="must be longer than zero"):
        parse_since(value)
    with pytest.raises(QueryError, match="must be longer than zero"):
        parse_query(f"ws1 since:{value}")


@pytest.mark.parametrize("value", ["181d", "26w", "4321h", "9999d", "9999w", "1000w"])
def test_since_over_180_days_is_refused(value: str) -> None:
    assert timedelta(days=180) == MAX_SINCE
    with pytest.raises(QueryError, match="at most 180d"):
        parse_since(value)
    with pytest.raises(QueryError, match="at most 180d"):
        parse_query(f"ws1 since:{value}")


@pytest.mark.parametrize(
    "value",
    ["", "7", "d", "7x", "7s", "7y", "-7d", "+7d", "7.5d", "7d2h", "1d1", "10000m", "7 d", "seven-d", "7dd", "0x7d"],
)
def test_malformed_since_is_refused_and_named(value: str) -> None:
    with pytest.raises(QueryError, match="is not a duration like 30m, 24h, 7d or 2w") as caught:
        parse_since(value)
    assert f"'since:{value}'" in str(caught.value)


@pytest.mark.parametrize("token", ["since:", "since:7x", "since:-1d", "since:1.5h"])
def test_malformed_since_in_a_query_names_the_token(token: str) -> None:
    with pytest.raises(QueryError, match="is not a duration") as caught:
        parse_query(f"ws1 {token}")
    assert f"'{token}'" in str(caught.value)


def test_all_filters_together() -> None:
    query = parse_query(f"{HEX40.upper()} severity:high,medium status:new,in-progress since:7d")
    assert query == DeviceQuery(
        DeviceRef(RefKind.MACHINE_ID, HEX40),
        AlertFilters(
            severities=frozenset({Severity.HIGH, Severity.MEDIUM}),
            statuses=frozenset({AlertStatus.NEW, AlertStatus.IN_PROGRESS}),
            since=timedelta(days=7),
        ),
    )
    assert query.filters.describe() == "severity: High, Medium · status: New, In progress · since: 7d"


def test_filter_order_does_not_matter() -> None:
    a = parse_query("since:24h ws1 status:resolved severity:low")
    b = parse_query("ws1 severity:low status:resolved since:24h")
    assert a == b
    assert a.filters.since == timedelta(hours=24)


# Errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ws1 priority:high", "unknown filter 'priority:' (use severity:, status: or since:)"),
        ("ws1 Sev:high", "unknown filter 'sev:' (use severity:, status: or since:)"),
        ("ws1 :high", "unknown filter ':' (use severity:, status: or since:)"),
        ("ws1 https://evil.example", "unknown filter 'https:' (use severity:, status: or since:)"),
        ("ws1 severity:high severity:low", "'severity:' is given twice"),
        ("ws1 status:new STATUS:resolved", "'status:' is given twice"),
        ("ws1 since:1d since:1d", "'since:' is given twice"),
        ("ws1 ws2", "one device per lookup: got 'ws1' and 'ws2'"),
        (f"{HEX40} ws2 severity:high", f"one device per lookup: got '{HEX40}' and 'ws2'"),
        ("", "name a device: a machine id or a hostname"),
        ("   \t\n ", "name a device: a machine id or a hostname"),
        ("severity:high", "name a device: a machine id or a hostname"),
        ("ws1 severity:", "'severity:' has an empty value"),
        ("ws1 severity:high,", "'severity:' has an empty value"),
        ("ws1 severity:,high", "'severity:' has an empty value"),
        ("ws1 status:", "'status:' has an empty value"),
        (
            "ws1 severity:critical",
            "unknown severity 'critical' (use high, info, informational, low, medium, unspecified)",
        ),
        ("ws1 severity:high,CRITICAL", "unknown severity 'critical'"),
        ("ws1 status:dismissed", "unknown status 'dismissed' (use inprogress, new, resolved)"),
        ("ws1 status:in progress", "one device per lookup: got 'ws1' and 'progress'"),
    ],
)
def test_query_errors_name_the_offending_token(text: str, message: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_query(text)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("device", "reason"),
    [
        ("../x", "not a machine id (40 hex characters) or a hostname"),
        ("%2e%2e", "not a machine id (40 hex characters) or a hostname"),
        ("a/b", "not a machine id (40 hex characters) or a hostname"),
        ("a?b", "not a machine id (40 hex characters) or a hostname"),
        ("a#b", "not a machine id (40 hex characters) or a hostname"),
        ("o'brien", "not a machine id (40 hex characters) or a hostname"),
        ('"ws1"', "not a machine id (40 hex characters) or a hostname"),
        ("-ws1", "not a machine id (40 hex characters) or a hostname"),
        ("ws..1", "not a machine id (40 hex characters) or a hostname"),
        ("\uff57\uff531", "not a machine id (40 hex characters) or a hostname"),
        ("a" * 256, "a hostname is at most 255 characters"),
    ],
)
def test_invalid_device_is_wrapped_in_query_error(device: str, reason: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_query(f"{device} severity:high")
    message = str(caught.value)
    assert reason in message
    shown = device if len(device) <= 60 else device[:59] + "…"
    assert message.startswith(f"'{shown}': ")
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


def test_long_values_are_clipped_in_messages() -> None:
    with pytest.raises(QueryError) as caught:
        parse_query("ws1 severity:" + "x" * 200)
    assert (
        str(caught.value) == f"unknown severity '{'x' * 59}…' (use high, info, informational, low, medium, unspecified)"
    )


def test_overlong_text_is_refused_before_anything_else() -> None:
    assert MAX_QUERY_LENGTH == 500
    at_limit = "ws1 " + " " * (MAX_QUERY_LENGTH - len("ws1 severity:high")) + "severity:high"
    assert len(at_limit) == MAX_QUERY_LENGTH
    assert parse_query(at_limit).filters.severities == frozenset({Severity.HIGH})
    with pytest.raises(QueryError, match="the request is longer than 500 characters"):
        parse_query(at_limit + " ")
    with pytest.raises(QueryError, match="the request is longer than 500 characters"):
        parse_query("../x bogus:1 " * 100)


def test_usage_mentions_every_filter() -> None:
    for word in ("<machineId|hostname>", "severity:", "status:", "since:"):
        assert word in USAGE


# AlertFilters.matches ----------------------------------------------------------------------


def test_empty_filters_match_everything() -> None:
    assert AlertFilters().matches(make_alert(), NOW) is True
    assert AlertFilters().matches(make_alert(severity="Critical", status="Dismissed"), NOW) is True


def test_severity_filter_matches() -> None:
    filters = AlertFilters(severities=frozenset({Severity.HIGH, Severity.MEDIUM}))
    assert filters.matches(make_alert(severity="High"), NOW) is True
    assert filters.matches(make_alert(severity="Medium"), NOW) is True
    assert filters.matches(make_alert(severity="Low"), NOW) is False
    assert filters.matches(make_alert(severity="Critical"), NOW) is False
    assert filters.matches(make_alert(), NOW) is False


def test_status_filter_matches() -> None:
    filters = parse_query("ws1 status:new,in-progress").filters
    assert filters.matches(make_alert(status="New"), NOW) is True
    assert filters.matches(make_alert(status="InProgress"), NOW) is True
    assert filters.matches(make_alert(status="Resolved"), NOW) is False
    assert filters.matches(make_alert(status="Dismissed"), NOW) is False


def test_since_filter_matches_on_last_activity() -> None:
    filters = AlertFilters(since=timedelta(days=7))
    assert filters.matches(make_alert(lastUpdateTime=stamp(NOW - timedelta(days=1))), NOW) is True
    assert filters.matches(make_alert(lastUpdateTime=stamp(NOW - timedelta(days=7))), NOW) is True  # inclusive
    edge = NOW - timedelta(days=7, microseconds=1)
    assert filters.matches(make_alert(lastUpdateTime=stamp(edge)), NOW) is False
    assert filters.matches(make_alert(lastUpdateTime=stamp(NOW - timedelta(days=8))), NOW) is False
    # Old creation, recent event: the most recent activity counts.
    recent_event = make_alert(
        alertCreationTime=stamp(NOW - timedelta(days=30)), lastEventTime=stamp(NOW - timedelta(hours=2))
    )
    assert filters.matches(recent_event, NOW) is True
    # No timestamps at all: cannot be shown as recent.
    assert filters.matches(make_alert(), NOW) is False
    assert filters.matches(make_alert(lastUpdateTime="garbage"), NOW) is False


def test_all_filters_must_match() -> None:
    filters = parse_query("ws1 severity:high status:new since:1h").filters
    fresh = stamp(NOW - timedelta(minutes=30))
    stale = stamp(NOW - timedelta(hours=2))
    assert filters.matches(make_alert(severity="High", status="New", lastUpdateTime=fresh), NOW) is True
    assert filters.matches(make_alert(severity="Low", status="New", lastUpdateTime=fresh), NOW) is False
    assert filters.matches(make_alert(severity="High", status="Resolved", lastUpdateTime=fresh), NOW) is False
    assert filters.matches(make_alert(severity="High", status="New", lastUpdateTime=stale), NOW) is False


# describe() and format_duration ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "described"),
    [
        ("ws1 severity:low,high,info", "severity: High, Low, Informational"),
        ("ws1 severity:unspecified,medium", "severity: Medium, Unspecified"),
        ("ws1 status:resolved,new,in_progress", "status: New, In progress, Resolved"),
        ("ws1 since:90m", "since: 90m"),
        ("ws1 since:24h", "since: 24h"),  # said back in the unit the person used
        ("ws1 since:2w", "since: 2w"),
        ("ws1 since:1440m", "since: 1440m"),
        ("ws1 since:1d", "since: 1d"),
        ("ws1 since:007D", "since: 7d"),  # only the spelling is normalised
        ("ws1 since:36h", "since: 36h"),
        ("ws1 severity:high since:7d", "severity: High · since: 7d"),
        ("ws1 status:new severity:medium", "severity: Medium · status: New"),
    ],
)
def test_describe(text: str, described: str) -> None:
    assert parse_query(text).filters.describe() == described


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (timedelta(days=7), "7d"),
        (timedelta(hours=24), "1d"),
        (timedelta(hours=25), "25h"),
        (timedelta(minutes=90), "90m"),
        (timedelta(minutes=60), "1h"),
        (timedelta(weeks=2), "14d"),
        (timedelta(seconds=90), "90s"),
        (timedelta(seconds=59), "59s"),
        (timedelta(0), "0s"),
    ],
)
def test_format_duration(span: timedelta, text: str) -> None:
    assert format_duration(span) == text


def test_the_unit_typed_is_kept_in_the_query_and_does_not_change_equality() -> None:
    hours, days = parse_query("ws1 since:24h").filters, parse_query("ws1 since:1d").filters
    assert hours.as_query() == "since:24h" and days.as_query() == "since:1d"
    assert hours == days and hash(hours) == hash(days)  # the same filter: one cache entry, one watch
    assert parse_query("ws1 " + hours.as_query()).filters.describe() == "since: 24h"  # a button's round trip
    assert format_duration(timedelta(hours=36), "d") == "36h"  # not whole in the unit given: the largest that is


UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


@given(st.integers(min_value=1, max_value=9999), st.sampled_from(sorted(UNITS)))
def test_since_and_format_duration_round_trip(number: int, unit: str) -> None:
    expected = number * UNITS[unit]
    if expected > MAX_SINCE:
        with pytest.raises(QueryError, match="at most 180d"):
            parse_since(f"{number}{unit}")
        return
    span = parse_since(f"{number}{unit}")
    assert span == expected
    shown = format_duration(span)
    assert parse_since(shown) == span
    filters = parse_query(f"ws1 since:{number}{unit}").filters
    assert filters.describe() == f"since: {number}{unit}"  # as typed
    assert parse_query(f"ws1 {filters.as_query()}").filters == filters


# Property: parse_query is total --------------------------------------------------------------

TOKENS = [
    "ws-fin-014",
    HEX40,
    HEX40.upper(),
    "../x",
    "a/b",
    "o'brien",
    "severity:high",
    "severity:high,medium",
    "severity:",
    "severity:critical",
    "SEVERITY:Info",
    "status:new",
    "status:in-progress",
    "status:,",
    "since:7d",
    "since:0d",
    "since:181d",
    "since:9999w",
    "since:\u0663d",
    "since:x",
    "since:",
    "foo:bar",
    ":",
    "::",
    ",",
    "\u00b2",
    "\x00",
    "\u200b",
    "\u2028",
]
token_queries = st.lists(st.sampled_from(TOKENS) | st.text(max_size=12), max_size=6).flatmap(
    lambda tokens: st.sampled_from([" ", "\t", "  ", "\u3000"]).map(lambda sep: sep.join(tokens))
)


OPTION_VALUES = {
    "severity": st.lists(
        st.sampled_from(["high", "Medium", "low", "info", "informational", "unspecified"]), min_size=1
    ),
    "status": st.lists(st.sampled_from(["new", "inprogress", "In-Progress", "in_progress", "resolved"]), min_size=1),
    "since": st.builds(lambda n, u: [f"{n}{u}"], st.integers(0, 9999), st.sampled_from(["m", "h", "d", "w", "H"])),
}
well_formed_queries = (
    st.builds(
        lambda device, options: [device, *(f"{key}:{','.join(values)}" for key, values in options.items())],
        st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,15}(\.[A-Za-z0-9_-]{1,10}){0,3}", fullmatch=True) | st.just(HEX40),
        st.fixed_dictionaries({}, optional=OPTION_VALUES),
    )
    .flatmap(st.permutations)
    .map(" ".join)
)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet=st.characters(codec="ascii")), token_queries, well_formed_queries))
@example("ws1 since:\u0663d")
@example("\u00b2 severity:\u00b2")
@example("x" * 501)
def test_parse_query_returns_a_query_or_raises_query_error(text: str) -> None:
    outcome: DeviceQuery | QueryError
    try:
        outcome = parse_query(text)
    except QueryError as exc:  # anything else escapes and fails the test
        outcome = exc
    event(type(outcome).__name__)
    if isinstance(outcome, QueryError):
        assert str(outcome)
        return
    query = outcome
    assert isinstance(query, DeviceQuery)
    assert len(text) <= MAX_QUERY_LENGTH
    assert query.device.value
    assert query.device.value == query.device.value.lower()
    since = query.filters.since
    assert since is None or timedelta(0) < since <= MAX_SINCE
    assert query.filters.severities <= frozenset(Severity) - {Severity.UNKNOWN}
    assert query.filters.statuses <= frozenset(AlertStatus) - {AlertStatus.UNKNOWN}
    assert query.filters.matches(make_alert(), NOW) in (True, False)


SEVERITY_MEANING = {
    "high": Severity.HIGH,
    "medium": Severity.MEDIUM,
    "low": Severity.LOW,
    "info": Severity.INFORMATIONAL,
    "informational": Severity.INFORMATIONAL,
    "unspecified": Severity.UNSPECIFIED,
}
STATUS_MEANING = {
    "new": AlertStatus.NEW,
    "inprogress": AlertStatus.IN_PROGRESS,
    "in-progress": AlertStatus.IN_PROGRESS,
    "in_progress": AlertStatus.IN_PROGRESS,
    "resolved": AlertStatus.RESOLVED,
}


@settings(max_examples=300, deadline=None)
@given(
    device=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,15}(\.[A-Za-z0-9_-]{1,10}){0,3}\.?", fullmatch=True),
    severities=st.lists(st.sampled_from(sorted(SEVERITY_MEANING)).map(str.title), max_size=4),
    statuses=st.lists(st.sampled_from(sorted(STATUS_MEANING)).map(str.upper), max_size=4),
    since=st.none() | st.tuples(st.integers(1, 180), st.sampled_from(["d", "D"])),
    order=st.randoms(use_true_random=False),
)
def test_well_formed_queries_parse_to_their_parts(
    device: str, severities: list[str], statuses: list[str], since: tuple[int, str] | None, order: Any
) -> None:
    tokens = [device]
    if severities:
        tokens.append("severity:" + ",".join(severities))
    if statuses:
        tokens.append("Status:" + ",".join(statuses))
    if since is not None:
        tokens.append(f"since:{since[0]}{since[1]}")
    order.shuffle(tokens)
    query = parse_query(" ".join(tokens))
    assert query.device.value == device.rstrip(".").lower()
    assert query.filters.severities == frozenset(SEVERITY_MEANING[s.lower()] for s in severities)
    assert query.filters.statuses == frozenset(STATUS_MEANING[s.lower()] for s in statuses)
    assert query.filters.since == (None if since is None else timedelta(days=since[0]))
