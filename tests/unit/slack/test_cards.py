"""Cards (`bot.slack.cards`): the device card (and its watch badge), problem cards, help and notices.

What they say, and that they stay inside Slack's limits and escaping rules for any input (the checker is
`tests.doubles.cards.safety_problems`).
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.alerts.problems import PERMISSION_HINT, Problem, ProblemKind, explain
from bot.alerts.query import USAGE, AlertFilters, DeviceQuery, QueryError, parse_query
from bot.alerts.result import DeviceAlerts, display_order
from bot.defender.errors import (
    AuthError,
    BadResponse,
    DefenderError,
    DefenderUnavailable,
    DeviceNotFound,
    InvalidDeviceReference,
    PermissionDenied,
    Throttled,
)
from bot.defender.limits import Api, BudgetExhausted
from bot.defender.models import (
    Alert,
    AlertStatus,
    Classification,
    HealthStatus,
    Machine,
    RiskLevel,
    Severity,
    parse_alert,
    parse_machine,
)
from bot.defender.portal import alert_url, device_url
from bot.defender.refs import DeviceRef, RefKind
from bot.slack import actions, mrkdwn
from bot.slack.blockkit import MAX_HEADER_TEXT, MAX_SECTION_TEXT, Block, Message, violations
from bot.slack.cards import MAX_LINKED_URL, CardContext, WatchBadge, device_card, help_card, notice, problem_card
from bot.text import clean
from tests.doubles.cards import (
    CONTEXT,
    DEVICE_URL,
    HOST,
    HOSTILE_TITLES,
    MID,
    NOW,
    PORTAL,
    TENANT,
    TEST_SEAL,
    WATCHER,
    assert_sendable,
    blocks_of,
    context_texts,
    safety_problems,
    section_texts,
    text_objects,
    without_watcher,
)

DETAIL_HINT = "Check the spelling, or use the 40-character machine id from the Defender portal."


# Builders ----------------------------------------------------------------------------------


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def unix(moment: datetime) -> int:
    return calendar.timegm(moment.utctimetuple())


def alert(alert_id: str, **fields: Any) -> Alert:
    raw = {"id": alert_id, "title": f"Alert {alert_id}", "severity": "Medium", "status": "New", **fields}
    return parse_alert(raw)


def machine(**fields: Any) -> Machine:
    raw = {
        "id": MID,
        "computerDnsName": HOST,
        "osPlatform": "Windows11",
        "osVersion": "22H2",
        "healthStatus": "Active",
        "riskScore": "Medium",
        "exposureLevel": "High",
        "rbacGroupName": "Finance",
        **fields,
    }
    return parse_machine(raw)


def result(
    alerts: list[Alert] | tuple[Alert, ...] = (),
    *,
    device: Machine | None = None,
    no_machine: bool = False,
    filters: AlertFilters | None = None,
    total: int | None = None,
    from_cache: bool = False,
    age: timedelta = timedelta(seconds=0),
    stale_reason: str | None = None,
    fetched_at: datetime = NOW,
) -> DeviceAlerts:
    return DeviceAlerts(
        machine_id=MID,
        machine=None if no_machine else (device or machine()),
        alerts=display_order(alerts),
        total=len(alerts) if total is None else total,
        filters=filters or AlertFilters(),
        fetched_at=fetched_at,
        age=age,
        from_cache=from_cache,
        stale_reason=stale_reason,
    )


def render(data: DeviceAlerts, *, tenant: str | None = TENANT, max_alerts: int = 10) -> Message:
    return device_card(data, CardContext(PORTAL, tenant, max_alerts=max_alerts, now=NOW, seal=TEST_SEAL))


def header(message: Message) -> str:
    (block,) = blocks_of(message, "header")
    return str(block["text"]["text"])


def alert_sections(message: Message) -> list[str]:
    emoji = tuple(f"{e} *" for e in (":red_circle:", ":large_orange_circle:", ":large_yellow_circle:"))
    emoji += (":large_blue_circle: *", ":white_circle: *")
    return [t for t in section_texts(message) if t.startswith(emoji)]


def buttons(message: Message) -> dict[str, Block]:
    (block,) = blocks_of(message, "actions")
    return {e["text"]["text"]: e for e in block["elements"]}


_ALERT_LINK = re.compile(r"<(" + re.escape(PORTAL) + r"/alerts/[^|>]*)[|>]")


def listed_ids(message: Message) -> list[str | None]:
    """The alert ids the card links to, in order; None for an alert listed without a link (URL too long)."""
    ids: list[str | None] = []
    for text in alert_sections(message):
        match = _ALERT_LINK.search(text)
        if match is None:
            ids.append(None)
            continue
        path = match[1].split("?", 1)[0]
        ids.append(unquote(path.rsplit("/", 1)[1]))
    return ids


# Card content ------------------------------------------------------------------------------


def test_block_layout() -> None:
    message = render(result([alert("da1"), alert("da2")]))
    assert [b["type"] for b in message.blocks] == [
        "header",
        "context",
        "section",
        "divider",
        "section",
        "section",
        "actions",
    ]
    assert violations(message) == []
    assert safety_problems(message) == []


def test_header_names_the_device_and_the_count() -> None:
    assert header(render(result([alert("da1"), alert("da2"), alert("da3")]))) == f"{HOST} · 3 alerts"
    assert header(render(result([alert("da1")]))) == f"{HOST} · 1 alert"
    assert header(render(result([]))) == f"{HOST} · 0 alerts"


def test_header_without_machine_details_uses_the_alerts_hostname_or_the_id() -> None:
    one_name = [alert("da1", computerDnsName="ws-7.contoso.local"), alert("da2", computerDnsName="ws-7.contoso.local")]
    assert header(render(result(one_name, no_machine=True))) == "ws-7.contoso.local · 2 alerts"
    two_names = [alert("da1", computerDnsName="a.contoso.local"), alert("da2", computerDnsName="b.contoso.local")]
    assert header(render(result(two_names, no_machine=True))) == f"{MID} · 2 alerts"


def test_context_lists_the_machine_facts() -> None:
    facts = context_texts(render(result([alert("da1")])))[0]
    assert facts == f"`{MID}` · Windows11 22H2 · Health Active · Risk Medium · Exposure High · Group Finance"


def test_context_leaves_out_unknown_facts() -> None:
    bare = machine(osPlatform=None, osVersion=None, riskScore=None, exposureLevel=None, rbacGroupName=None)
    assert context_texts(render(result([], device=bare)))[0] == f"`{MID}` · Health Active"
    assert context_texts(render(result([], no_machine=True)))[0] == f"`{MID}`"
    odd = machine(healthStatus="Quarantined", riskScore="Severe", exposureLevel="none")
    facts = context_texts(render(result([], device=odd)))[0]
    assert "Health Unknown · Risk Unknown · Exposure None" in facts


@pytest.mark.parametrize(
    ("from_cache", "age", "stale", "expected"),
    [
        (False, timedelta(seconds=0), None, "as of <!date^{ts}^{{time}}|2026-11-27 11:59 UTC> · fresh from Defender"),
        (True, timedelta(seconds=42), None, "as of <!date^{ts}^{{time}}|2026-11-27 11:59 UTC> · cached 42 s"),
        (
            True,
            timedelta(minutes=9, seconds=5),
            None,
            "as of <!date^{ts}^{{time}}|2026-11-27 11:59 UTC> · cached 9 min",
        ),
        (
            True,
            timedelta(minutes=9),
            "Defender unavailable",
            ":warning: stale: Defender unavailable, data from 9 min ago",
        ),
        (True, timedelta(seconds=75), "Defender throttled", ":warning: stale: Defender throttled, data from 1 min ago"),
    ],
)
def test_context_says_how_fresh_the_data_is(from_cache: bool, age: timedelta, stale: str | None, expected: str) -> None:
    fetched = datetime(2026, 11, 27, 11, 59, 30, tzinfo=UTC)
    message = render(result([alert("da1")], from_cache=from_cache, age=age, stale_reason=stale, fetched_at=fetched))
    assert context_texts(message)[1] == expected.format(ts=unix(fetched))


def test_stale_reason_is_escaped() -> None:
    message = render(result([], stale_reason="<!channel> & co", from_cache=True, age=timedelta(seconds=3)))
    assert context_texts(message)[1] == ":warning: stale: &lt;!channel&gt; &amp; co, data from 3 s ago"


def mixed_alerts() -> list[Alert]:
    """High 2 · Medium 3 · Low 1 · Informational 1; New 4 · In progress 2 · Resolved 1."""
    return [
        alert("a1", severity="High", status="New"),
        alert("a2", severity="High", status="InProgress"),
        alert("a3", severity="Medium", status="New"),
        alert("a4", severity="Medium", status="New"),
        alert("a5", severity="Medium", status="Resolved"),
        alert("a6", severity="Low", status="In Progress"),
        alert("a7", severity="Informational", status="new"),
    ]


def test_summary_counts_severities_and_statuses() -> None:
    summary = section_texts(render(result(mixed_alerts())))[0]
    assert summary == (
        "*Severity*  :red_circle: High 2 · :large_orange_circle: Medium 3 · :large_yellow_circle: Low 1"
        " · :large_blue_circle: Informational 1\n"
        "*Status*  New 4 · In progress 2 · Resolved 1"
    )


def test_summary_names_the_filters_and_the_unfiltered_total() -> None:
    filters = parse_query("ws1 severity:high,medium status:new since:7d").filters
    shown = [alert("a1", severity="High"), alert("a2", severity="Medium")]
    summary = section_texts(render(result(shown, filters=filters, total=12)))[0]
    assert summary.splitlines() == [
        "*Severity*  :red_circle: High 1 · :large_orange_circle: Medium 1",
        "*Status*  New 2",
        "*Filters*  severity: High, Medium · status: New · since: 7d (12 alerts in all)",
    ]


def test_summary_of_no_alerts_says_none() -> None:
    summary = section_texts(render(result([])))[0]
    assert summary == "*Severity*  none\n*Status*  none"


def test_fallback_text_counts_alerts() -> None:
    assert render(result(mixed_alerts())).text == f"{HOST}: 7 alerts (High 2, Medium 3, Low 1, Informational 1)"
    assert render(result([alert("a1", severity="Low")])).text == f"{HOST}: 1 alert (Low 1)"
    assert render(result([])).text == f"{HOST}: 0 alerts"


def test_alerts_are_ordered_unresolved_then_severity_then_recent_activity() -> None:
    base = datetime(2026, 11, 20, tzinfo=UTC)
    alerts = [
        alert("resolved-high", severity="High", status="Resolved", lastUpdateTime=stamp(base + timedelta(days=6))),
        alert("low-new", severity="Low", status="New", lastUpdateTime=stamp(base + timedelta(days=5))),
        alert("high-old", severity="High", status="New", lastUpdateTime=stamp(base)),
        alert("medium", severity="Medium", status="InProgress", lastUpdateTime=stamp(base + timedelta(days=4))),
        alert("high-new", severity="High", status="InProgress", alertCreationTime=stamp(base + timedelta(days=2))),
        alert("resolved-low", severity="Low", status="Resolved", lastEventTime=stamp(base + timedelta(days=6))),
        alert("unknown-sev", severity="Catastrophic", status="New", lastUpdateTime=stamp(base + timedelta(days=6))),
        alert("no-time", severity="High", status="New"),
    ]
    expected = ["high-new", "high-old", "no-time", "medium", "low-new", "unknown-sev", "resolved-high", "resolved-low"]
    assert [a.id for a in display_order(alerts)] == expected
    assert listed_ids(render(result(alerts))) == expected


def test_alert_line_links_the_title_to_the_alert_page() -> None:
    line = alert_sections(render(result([alert("da638012345678901234_-1234567890", title="Suspicious PowerShell")])))[0]
    url = f"{PORTAL}/alerts/da638012345678901234_-1234567890?tid={TENANT}"
    assert line.splitlines()[0] == f":large_orange_circle: *Medium* · New · <{url}|Suspicious PowerShell>"


def test_alert_link_without_tenant_has_no_query() -> None:
    line = alert_sections(render(result([alert("da1")]), tenant=None))[0]
    assert f"<{PORTAL}/alerts/da1|Alert da1>" in line


@pytest.mark.parametrize(
    ("alert_id", "encoded"),
    [
        ("da1/../../machines", "da1%2F..%2F..%2Fmachines"),
        ("da1#frag", "da1%23frag"),
        ("da1?tid=other&x=1", "da1%3Ftid%3Dother%26x%3D1"),
        ("da1|evil>", "da1%7Cevil%3E"),
        ("da 1<!here>", "da%201%3C%21here%3E"),
        ("é🙂", "%C3%A9%F0%9F%99%82"),
    ],
)
def test_alert_ids_are_percent_encoded(alert_id: str, encoded: str) -> None:
    message = render(result([alert(alert_id, title="T")]))
    line = alert_sections(message)[0]
    assert f"<{PORTAL}/alerts/{encoded}?tid={TENANT}|T>" in line
    assert listed_ids(message) == [alert_id]
    assert safety_problems(message) == []


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        (
            {"status": "Resolved", "classification": "TruePositive", "determination": "Malware"},
            "Resolved (TruePositive / Malware)",
        ),
        ({"status": "Resolved", "classification": "FalsePositive"}, "Resolved (FalsePositive)"),
        ({"status": "Resolved", "determination": "SecurityTesting"}, "Resolved (SecurityTesting)"),
        (
            {"status": "Resolved", "classification": "Weird", "determination": "<@U1>"},
            "Resolved (Unknown / &lt;@U1&gt;)",
        ),
        ({"status": "Resolved"}, "Resolved"),
        ({"status": "New", "classification": "TruePositive", "determination": "Malware"}, "New"),
        ({"status": "InProgress"}, "In progress"),
        ({"status": "Paused"}, "Unknown"),
    ],
)
def test_status_shows_the_verdict_of_resolved_alerts(fields: dict[str, str], status: str) -> None:
    line = alert_sections(render(result([alert("da1", severity="High", **fields)])))[0]
    assert line.startswith(f":red_circle: *High* · {status} · <{PORTAL}/alerts/da1")


def test_detail_line_with_everything() -> None:
    updated = datetime(2026, 11, 27, 10, 30, 15, 123456, tzinfo=UTC)
    line = alert_sections(
        render(
            result(
                [
                    alert(
                        "da1",
                        category="Execution",
                        detectionSource="WindowsDefenderAtp",
                        assignedTo="secops@contoso.com",
                        alertCreationTime="2026-11-27T09:00:00Z",
                        lastEventTime="2026-11-27T10:00:00.1234567Z",
                        lastUpdateTime=stamp(updated),
                    )
                ]
            )
        )
    )[0]
    detail = line.splitlines()[1]
    assert detail == (
        "Execution · WindowsDefenderAtp · assigned to secops@contoso.com · last activity "
        f"<!date^{unix(updated)}^{{date_short_pretty}} {{time}}|2026-11-27 10:30 UTC>"
    )
    assert unix(updated) == 1795775415


def test_last_activity_is_the_latest_of_creation_event_and_update() -> None:
    created = datetime(2026, 11, 27, 11, 45, tzinfo=UTC)
    line = alert_sections(
        render(result([alert("da1", alertCreationTime=stamp(created), lastUpdateTime="2026-11-27T08:00:00Z")]))
    )[0]
    assert (
        line.splitlines()[1]
        == f"unassigned · last activity <!date^{unix(created)}^{{date_short_pretty}} {{time}}|2026-11-27 11:45 UTC>"
    )


def test_detail_line_without_anything() -> None:
    line = alert_sections(render(result([alert("da1")])))[0]
    assert line.splitlines()[1] == "unassigned"


def test_more_alerts_than_fit_are_summarised_with_a_device_link() -> None:
    alerts = [alert(f"da{n:02d}") for n in range(12)]
    message = render(result(alerts), max_alerts=10)
    assert len(alert_sections(message)) == 10
    assert listed_ids(message) == [f"da{n:02d}" for n in range(10)]
    assert message.blocks[-2] == {
        "type": "context",
        "elements": [
            {"type": "mrkdwn", "text": f"Showing 10 of 12 · …and 2 more: <{DEVICE_URL}|see them all in Defender>"}
        ],
    }
    assert header(message) == f"{HOST} · 12 alerts"


def test_exactly_max_alerts_has_no_tail() -> None:
    message = render(result([alert(f"da{n:02d}") for n in range(5)]), max_alerts=5)
    assert len(alert_sections(message)) == 5
    assert not any("Showing" in t for _, t in text_objects(message.blocks))


def test_no_alerts_for_the_device() -> None:
    message = render(result([]))
    assert [b["type"] for b in message.blocks] == ["header", "context", "section", "section", "actions"]
    assert section_texts(message)[-1] == "No alerts for this device."


def test_no_alerts_match_the_filters() -> None:
    filters = parse_query("ws1 severity:high").filters
    message = render(result([], filters=filters, total=4))
    assert section_texts(message)[-1] == "No alerts match these filters."
    assert "(4 alerts in all)" in section_texts(message)[0]


@pytest.mark.parametrize(
    "query",
    [
        "ws1",
        "ws1 severity:high",
        "ws1 severity:informational,unspecified,low status:resolved",
        "ws1 status:new,inprogress since:90m",
        "ws1 severity:medium,high status:new,inprogress,resolved since:2w",
    ],
)
def test_buttons_refresh_open_watch(query: str) -> None:
    filters = parse_query(query).filters
    message = render(result([alert("da1")], filters=filters))
    assert message.blocks[-1]["type"] == "actions"
    found = buttons(message)
    assert list(found) == ["Refresh", "Open in Defender", "Watch"]
    assert found["Refresh"]["action_id"] == actions.REFRESH == "device_alerts.refresh"
    assert found["Open in Defender"]["action_id"] == actions.OPEN_DEVICE
    assert found["Watch"]["action_id"] == actions.WATCH
    expected = DeviceQuery(DeviceRef(RefKind.MACHINE_ID, MID), filters)
    assert actions.parse_lookup_value(TEST_SEAL.open(found["Refresh"]["value"])) == expected
    assert actions.parse_lookup_value(TEST_SEAL.open(found["Watch"]["value"])) == expected
    assert found["Open in Defender"]["url"] == DEVICE_URL == device_url(PORTAL, MID)
    assert "value" not in found["Open in Defender"]


def test_ten_thousand_alerts() -> None:
    severities = ["High", "Medium", "Low", "Informational", "UnSpecified"]
    statuses = ["New", "InProgress", "Resolved"]
    alerts = [
        alert(
            f"da{n:05d}",
            severity=severities[n % 5],
            status=statuses[n % 3],
            lastUpdateTime=stamp(NOW - timedelta(minutes=n)),
        )
        for n in range(10_000)
    ]
    message = render(result(alerts))
    assert_sendable(message)
    assert header(message) == f"{HOST} · 10000 alerts"
    assert len(alert_sections(message)) == 10
    assert f"Showing 10 of 10000 · …and 9990 more: <{DEVICE_URL}|see them all in Defender>" in context_texts(
        message, -1
    )
    assert section_texts(message)[0].startswith(
        "*Severity*  :red_circle: High 2000 · :large_orange_circle: Medium 2000"
    )
    assert "*Status*  New 3334 · In progress 3333 · Resolved 3333" in section_texts(message)[0]


@pytest.mark.parametrize("title_length", [151, 400, 5000])
def test_five_hundred_huge_alerts(title_length: int) -> None:
    alerts = [
        alert(
            f"da{n:03d}",
            title="T" * title_length,
            description="D" * 10_000,
            severity="High",
            category="C" * 500,
            detectionSource="S" * 500,
            assignedTo="A" * 500,
            determination="X" * 500,
        )
        for n in range(500)
    ]
    message = render(result(alerts), max_alerts=20)
    assert_sendable(message)
    assert "D" * 100 not in str(message.blocks)  # descriptions are not shown at all
    for line in alert_sections(message):
        assert f"|{'T' * 149}…>" in line  # titles cut to 150 visible characters
        assert f"{'C' * 39}… · {'S' * 39}… · assigned to {'A' * 59}…" in line


def test_escape_heavy_alerts_stay_in_budget() -> None:
    """`&` grows five-fold when escaped: limits must hold on the escaped text."""
    amp = "&" * 5000
    alerts = [
        alert(
            f"da{n:02d}",
            title=amp,
            category=amp,
            detectionSource=amp,
            assignedTo=amp,
            status="Resolved",
            classification="TruePositive",
            determination=amp,
            lastUpdateTime=stamp(NOW),
        )
        for n in range(40)
    ]
    device = machine(computerDnsName=amp, osPlatform=amp, osVersion=amp, rbacGroupName=amp)
    message = render(result(alerts, device=device, filters=parse_query("ws1 status:resolved").filters), max_alerts=20)
    assert_sendable(message)
    listed = len(alert_sections(message))
    assert 1 <= listed < 20
    assert f"Showing {listed} of 40 · …and {40 - listed} more" in context_texts(message, -1)[0]
    assert all(len(t) <= MAX_SECTION_TEXT for t in section_texts(message))


@pytest.mark.parametrize("title", HOSTILE_TITLES)
def test_hostile_titles_are_escaped(title: str) -> None:
    message = render(result([alert("da1", title=title)]))
    assert_sendable(message)
    label = alert_sections(message)[0].split("|", 1)[1].split(">", 1)[0]
    assert label == mrkdwn.escape(clean(title)).replace("|", "¦")
    assert "\u202e" not in label
    assert "\x1b" not in label
    assert "\n" not in label


def test_hostile_title_renders_as_entities() -> None:
    line = alert_sections(render(result([alert("da1", title="<!channel> & <https://evil|x>")])))[0]
    assert line.endswith(
        f"<{PORTAL}/alerts/da1?tid={TENANT}|&lt;!channel&gt; &amp; &lt;https://evil¦x&gt;>\nunassigned"
    )


@pytest.mark.parametrize("hostile", HOSTILE_TITLES)
def test_hostile_text_in_every_field(hostile: str) -> None:
    fields = {
        "title": hostile,
        "description": hostile,
        "category": hostile,
        "detectionSource": hostile,
        "assignedTo": hostile,
        "determination": hostile,
        "status": "Resolved",
        "classification": hostile,
        "severity": hostile,
        "computerDnsName": hostile,
        "rbacGroupName": hostile,
        "threatName": hostile,
    }
    device = machine(
        computerDnsName=hostile,
        osPlatform=hostile,
        osVersion=hostile,
        rbacGroupName=hostile,
        healthStatus=hostile,
        riskScore=hostile,
        exposureLevel=hostile,
    )
    for data in (result([alert("da1", **fields)], device=device), result([alert("da1", **fields)], no_machine=True)):
        message = render(data)
        assert_sendable(message)


def test_hostile_hostname_examples_are_escaped_in_mrkdwn() -> None:
    device = machine(computerDnsName="<!here> & <@U123>", rbacGroupName="<!subteam^S1|ops>", osPlatform="<#C1>")
    message = render(
        result([alert("da1", assignedTo="<!channel>", category="<@U9>", detectionSource="a>b")], device=device)
    )
    assert_sendable(message)
    assert message.text == "&lt;!here&gt; &amp; &lt;@U123&gt;: 1 alert (Medium 1)"
    assert "Group &lt;!subteam^S1|ops&gt;" in context_texts(message)[0]
    assert "&lt;#C1&gt;" in context_texts(message)[0]
    assert "&lt;@U9&gt; · a&gt;b · assigned to &lt;!channel&gt;" in alert_sections(message)[0]
    # the header is plain_text: Slack shows it literally and parses no mentions or links there
    assert blocks_of(message, "header")[0]["text"]["type"] == "plain_text"
    assert header(message) == "<!here> & <@U123> · 1 alert"


def test_three_hundred_character_hostname() -> None:
    name = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + "." + "e" * 44
    assert len(name) == 300
    message = render(result([alert(f"da{n}") for n in range(30)], device=machine(computerDnsName=name)))
    assert_sendable(message)
    assert header(message) == "a" * 63 + "." + "b" * 35 + "… · 30 alerts"
    assert len(header(message)) <= MAX_HEADER_TEXT
    assert message.text == clean(f"{name}: 30 alerts (Medium 30)", 300)


def test_header_stays_in_limit_for_escape_heavy_and_wide_names() -> None:
    for name in ("&" * 1000, "界" * 1000, "<!channel>" * 100, "\u200b" * 50 + "x"):
        message = render(result([alert("da1")], device=machine(computerDnsName=name)))
        assert_sendable(message)
        assert 1 <= len(header(message)) <= MAX_HEADER_TEXT


@pytest.mark.parametrize("count", [19, 20, 21, 60])
def test_max_twenty_alerts(count: int) -> None:
    message = render(result([alert(f"da{n:02d}", title="x" * 140) for n in range(count)]), max_alerts=20)
    assert_sendable(message)
    assert len(alert_sections(message)) == min(count, 20)
    has_tail = any(t.startswith("Showing ") for t in context_texts(message, -1))
    assert has_tail is (count > 20)


@pytest.mark.parametrize("max_alerts", [1, 20, 49, 100])
def test_block_count_stays_under_fifty(max_alerts: int) -> None:
    message = render(result([alert(f"da{n:03d}", title="t") for n in range(200)]), max_alerts=max_alerts)
    assert_sendable(message)
    listed = len(alert_sections(message))
    assert listed == min(max_alerts, 44)
    assert len(message.blocks) == (4 + listed + 2 if listed < 200 else 0)
    assert f"Showing {listed} of 200" in context_texts(message, -1)[0]


def test_long_alert_id_keeps_the_section_in_limits() -> None:
    message = render(result([alert("/" * 1000, title="t")]))
    assert violations(message) == []


def test_an_alert_whose_link_would_be_too_long_is_listed_as_text() -> None:
    # Hypothesis found this one: 4-byte characters percent-encode to 12 characters each.
    long_id = "\U00010000" * 40
    assert len(alert_url(PORTAL, long_id, TENANT)) > MAX_LINKED_URL
    message = render(result([alert(long_id, title="<!here> t")]))
    assert_sendable(message)
    assert listed_ids(message) == [None]
    assert alert_sections(message)[0].startswith(":large_orange_circle: *Medium* · New · &lt;!here&gt; t\n")


# Property: any alerts, any text -----------------------------------------------------------------

_FRAGMENTS = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<@U123>",
    "<@W1|boss>",
    "<#C1|general>",
    "<!subteam^S1|@team>",
    "<https://evil.example|Open in Defender>",
    "<http://x>",
    "<mailto:a@b.c|a>",
    "<!date^1^{time}|x>",
    "&",
    "&amp;",
    "&lt;",
    "&gt;",
    "&#60;",
    "<",
    ">",
    "|",
    "`",
    "```",
    "*",
    "_",
    "~",
    ":",
    "^",
    "\n",
    "\r\n",
    "\t",
    " ",
    "\u202e",
    "\u202d",
    "\u200b",
    "\u200d",
    "\u2060",
    "\ufeff",
    "\x1b[31m",
    "\x00",
    "\x7f",
    "é",
    "界",
    "🙂",
    "👩‍💻",
    "x",
    "https://",
    "%2F",
    "/",
    "#",
    "?",
]
_text = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(_FRAGMENTS), max_size=30).map("".join),
    st.tuples(st.sampled_from(["&", "<", ">", "x", "界", "🙂", "\u200b", " "]), st.integers(0, 3000)).map(
        lambda pair: pair[0] * pair[1]
    ),
)
_maybe_text = st.one_of(st.none(), _text)
_moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC))
_timestamp = st.one_of(st.none(), _moments.map(stamp), _text)


def _enum(values: list[str]) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), st.sampled_from(values), _text)


_alert_dicts = st.fixed_dictionaries(
    {
        "id": st.one_of(
            st.text(min_size=1, max_size=64), st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=8).map("".join)
        ),
        "title": _maybe_text,
        "description": _maybe_text,
        "severity": _enum([s.value for s in Severity]),
        "status": _enum([s.value for s in AlertStatus]),
        "classification": _enum([c.value for c in Classification]),
        "determination": _maybe_text,
        "category": _maybe_text,
        "detectionSource": _maybe_text,
        "assignedTo": _maybe_text,
        "computerDnsName": _maybe_text,
        "rbacGroupName": _maybe_text,
        "threatName": _maybe_text,
        "alertCreationTime": _timestamp,
        "lastEventTime": _timestamp,
        "lastUpdateTime": _timestamp,
    }
)
_machines = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "id": st.just(MID),
            "computerDnsName": _maybe_text,
            "osPlatform": _maybe_text,
            "osVersion": _maybe_text,
            "healthStatus": _enum([h.value for h in HealthStatus]),
            "riskScore": _enum([r.value for r in RiskLevel]),
            "exposureLevel": _enum([r.value for r in RiskLevel]),
            "rbacGroupName": _maybe_text,
        }
    ).map(parse_machine),
)
_filters = st.builds(
    AlertFilters,
    severities=st.frozensets(st.sampled_from([s for s in Severity if s is not Severity.UNKNOWN])),
    statuses=st.frozensets(st.sampled_from([AlertStatus.NEW, AlertStatus.IN_PROGRESS, AlertStatus.RESOLVED])),
    since=st.one_of(st.none(), st.sampled_from([timedelta(minutes=30), timedelta(hours=36), timedelta(days=180)])),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    raw_alerts=st.lists(_alert_dicts, max_size=60),
    device=_machines,
    filters=_filters,
    max_alerts=st.integers(1, 20),
    tenant=st.sampled_from([None, TENANT]),
    from_cache=st.booleans(),
    age=st.integers(0, 10**7).map(lambda s: timedelta(seconds=s)),
    stale_reason=st.sampled_from([None, "Defender throttled", "Defender unavailable", "<!here> & <@U1>"]),
    fetched_at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
)
def test_any_alerts_make_a_sendable_safe_card(
    raw_alerts: list[dict[str, Any]],
    device: Machine | None,
    filters: AlertFilters,
    max_alerts: int,
    tenant: str | None,
    from_cache: bool,
    age: timedelta,
    stale_reason: str | None,
    fetched_at: datetime,
) -> None:
    alerts = [parse_alert(raw) for raw in raw_alerts]
    data = DeviceAlerts(
        machine_id=MID,
        machine=device,
        alerts=display_order(alerts),
        total=len(alerts) + 3,
        filters=filters,
        fetched_at=fetched_at,
        age=age,
        from_cache=from_cache,
        stale_reason=stale_reason,
    )
    message = device_card(data, CardContext(PORTAL, tenant, max_alerts=max_alerts, now=NOW, seal=TEST_SEAL))
    assert violations(message) == []
    assert safety_problems(message) == []
    listed = len(alert_sections(message))
    assert listed <= min(len(alerts), max_alerts)
    linked = [a.id if len(alert_url(PORTAL, a.id, tenant)) <= MAX_LINKED_URL else None for a in data.alerts]
    assert listed_ids(message) == linked[:listed]
    tail = [t for t in context_texts(message, -1) if t.startswith("Showing ")]
    if listed < len(alerts):
        more = len(alerts) - listed
        assert tail == [
            f"Showing {listed} of {len(alerts)} · …and {more} more: <{DEVICE_URL}|see them all in Defender>"
        ]
    else:
        assert tail == []
    refresh = buttons(message)["Refresh"]["value"]
    assert actions.parse_lookup_value(TEST_SEAL.open(refresh)) == DeviceQuery(
        DeviceRef(RefKind.MACHINE_ID, MID), filters
    )


# Problem cards ---------------------------------------------------------------------------------


def _query_error() -> QueryError:
    with pytest.raises(QueryError) as caught:
        parse_query("ws1 colour:red")
    return caught.value


PROBLEM_CASES: list[tuple[Exception, ProblemKind, str, str]] = [
    (_query_error(), ProblemKind.BAD_INPUT, "unknown filter 'colour:' (use severity:, status: or since:)", ""),
    (InvalidDeviceReference("not a machine id"), ProblemKind.BAD_INPUT, "not a machine id", ""),
    (DeviceNotFound("ws-fin-01"), ProblemKind.NOT_FOUND, "No device in Defender matches 'ws-fin-01'.", DETAIL_HINT),
    (
        PermissionDenied("Missing application roles. API required roles: Alert.Read.All"),
        ProblemKind.PERMISSION,
        "Defender refused the request: Missing application roles. API required roles: Alert.Read.All",
        PERMISSION_HINT,
    ),
    (
        Throttled(42.4, target="trk-429"),
        ProblemKind.THROTTLED,
        "Defender is throttling the bot's requests.",
        "Try again in 42 s.",
    ),
    (
        BudgetExhausted(Api.MACHINE_ALERTS, 17.6),
        ProblemKind.BUDGET,
        "The bot has used its Defender call budget for the moment (it keeps under Defender's rate limits).",
        "Try again in 18 s.",
    ),
    (
        DefenderUnavailable("connect timeout to 10.20.30.40:443 after 3 retries", target="trk-503"),
        ProblemKind.UNAVAILABLE,
        "Defender could not be reached.",
        "Try again in a minute.",
    ),
    (
        AuthError(
            "Invalid client secret provided. client_secret=Zx8Q~SuperSecretValue123",
            code="7000215",
            hint="check DEVICE_ALERTS_CLIENT_SECRET in tenant 8f3c2d1e",
            target="trk-401",
        ),
        ProblemKind.AUTH,
        "The bot could not sign in to Defender.",
        "An admin should check the bot's configuration and logs.",
    ),
    (
        BadResponse("alert record without an id; body={'secret': 1}", target="trk-500"),
        ProblemKind.BAD_RESPONSE,
        "Defender sent an answer the bot could not use.",
        "Try again later; if it persists, an admin should check the bot's logs.",
    ),
    (
        DefenderError("odd failure detail", target="trk-999"),
        ProblemKind.BAD_RESPONSE,
        "Defender sent an answer the bot could not use.",
        "Try again later; if it persists, an admin should check the bot's logs.",
    ),
]


def test_problem_cases_cover_every_kind() -> None:
    assert {kind for _, kind, _, _ in PROBLEM_CASES} == set(ProblemKind)


@pytest.mark.parametrize(
    ("exc", "kind", "summary", "hint"), PROBLEM_CASES, ids=[f"{c[1].name}-{type(c[0]).__name__}" for c in PROBLEM_CASES]
)
def test_problem_card_for_every_kind(exc: Exception, kind: ProblemKind, summary: str, hint: str) -> None:
    problem = explain(exc)
    assert problem.kind is kind
    message = problem_card(problem, "ws-fin-01 severity:high")
    assert_sendable(message)
    main = section_texts(message)[0]
    lines = main.splitlines()
    assert lines[0] == f":warning: {mrkdwn.escape(summary)}"
    if hint:
        assert lines[-1] == mrkdwn.escape(hint)
    assert message.text == mrkdwn.escape(summary)
    notes = context_texts(message)
    assert notes[0] == "You asked: `ws-fin-01 severity:high`"
    target = getattr(exc, "target", None)
    if target:
        assert f"Defender tracking id `{target}`" in notes
    else:
        assert not any("tracking id" in n for n in notes)
    usage = f"Usage: `/device-alerts {mrkdwn.escape(USAGE)}`"
    assert (usage in notes) is (kind is ProblemKind.BAD_INPUT)
    if problem.operator_detail:
        assert problem.operator_detail not in str(message.payload())


def test_auth_error_detail_never_reaches_the_card() -> None:
    exc = AuthError(
        "AADSTS7000215: Invalid client secret provided. Secret hint: Zx8",
        code="7000215",
        hint="the client secret ~Q8SuperSecret expired",
        target="trk-401",
    )
    problem = explain(exc)
    assert problem.operator_detail == str(exc)
    payload = str(problem_card(problem).payload())
    for secret in ("AADSTS", "7000215", "Invalid client secret", "SuperSecret", "Zx8", "expired"):
        assert secret not in payload
    assert "Defender tracking id `trk-401`" in payload


def test_unavailable_detail_never_reaches_the_card() -> None:
    problem = explain(DefenderUnavailable("proxy 10.20.30.40 refused CONNECT", target=None))
    message = problem_card(problem)
    assert "10.20.30.40" not in str(message.payload())
    assert len(message.blocks) == 1  # no query, no tracking id: no context at all


def test_not_found_card_suggests_hostnames() -> None:
    exc = DeviceNotFound("ws-fin-01", suggestions=("ws-fin-014.contoso.local", "ws-fin-015.contoso.local"))
    message = problem_card(explain(exc), "ws-fin-01")
    assert_sendable(message)
    assert section_texts(message)[0].splitlines() == [
        ":warning: No device in Defender matches 'ws-fin-01'.",
        "Did you mean: `ws-fin-014.contoso.local`, `ws-fin-015.contoso.local`?",
        DETAIL_HINT,
    ]


def test_hostile_suggestions_and_query_are_escaped() -> None:
    exc = DeviceNotFound("ws", suggestions=("<!channel>", "a&b", "<@U1>" + "x" * 200))
    message = problem_card(explain(exc), "<!channel> & <@U123> <https://evil|x>")
    assert_sendable(message)
    assert "Did you mean: `&lt;!channel&gt;`, `a&amp;b`, `&lt;@U1&gt;" in section_texts(message)[0]
    assert context_texts(message) == [
        "You asked: `&lt;!channel&gt; &amp; &lt;@U123&gt; &lt;https://evil|x&gt;`",
    ]


def test_bad_input_card_shows_usage() -> None:
    message = problem_card(explain(_query_error()), "ws1 colour:red")
    assert context_texts(message)[-1] == (
        "Usage: `/device-alerts &lt;machineId|hostname&gt; [severity:high,medium] "
        "[status:new,inprogress,resolved] [since:7d|24h]`"
    )
    assert_sendable(message)


@pytest.mark.parametrize("query", ["x" * 5000, "&" * 5000, "<!channel>" * 500, "\u202e\x1b[31m" * 100])
def test_problem_card_with_huge_hostile_query(query: str) -> None:
    message = problem_card(explain(_query_error()), query)
    assert_sendable(message)


def test_problem_card_within_limits_for_long_messages() -> None:
    problem = Problem(ProblemKind.PERMISSION, "x" * 10_000, "hint", suggestions=("s" * 500,) * 5, tracking_id="t" * 500)
    assert_sendable(problem_card(problem, "q" * 1000))


def test_problem_card_with_escape_heavy_defender_message() -> None:
    message = problem_card(explain(PermissionDenied("&" * 700)))
    assert violations(message) == []


@pytest.mark.parametrize("backend", ["simulator", "defender"])
def test_help_card(backend: str) -> None:
    message = help_card(backend=backend)
    assert_sendable(message)
    assert message.text == "How to use /device-alerts"
    body = section_texts(message)[0]
    assert body.startswith("*Look up a device's Defender alerts*\n`/device-alerts &lt;machineId|hostname&gt; ")
    assert "`/device-alerts ws-fin-014 severity:high,medium status:new since:24h`" in body
    note = context_texts(message)[0]
    simulator = "the built-in Defender simulator (demo data, no real devices)"
    assert (simulator in note) is (backend == "simulator")
    assert ("every device in the Defender tenant" in note) is (backend != "simulator")
    assert "*Watch a device*\n• `/device-alerts watch ws-fin-014 for:8h severity:high` — " in body
    assert "`for:` defaults to 8h, at most 7d" in body
    assert "`/device-alerts unwatch ws-fin-014`" in body
    assert "`/device-alerts watches`" in body
    assert "*Unwatch*" in body
    assert "reserved" not in body + "".join(context_texts(message))
    invite = "To watch a device in a private channel, invite me first: `/invite @device-alerts`."
    assert context_texts(message)[1] == invite


def test_notice_escapes_its_text() -> None:
    message = notice("Looking up <!channel> & <@U123>\u202e…")
    assert_sendable(message)
    assert message.text == "Looking up &lt;!channel&gt; &amp; &lt;@U123&gt;…"
    assert message.blocks == [{"type": "section", "text": {"type": "mrkdwn", "text": message.text}}]


def test_notice_cuts_long_text() -> None:
    message = notice("x" * 10_000)
    assert_sendable(message)
    assert section_texts(message)[0] == "x" * 2999 + "…"
    assert message.text == "x" * 299 + "…"


def test_notice_with_escape_heavy_text_stays_in_limits() -> None:
    assert violations(notice("<" * 1000)) == []


# The watch badge of a root card ---------------------------------------------------------------


def test_root_card_has_the_watch_line_and_an_unwatch_button() -> None:
    badge = WatchBadge(WATCHER, NOW + timedelta(hours=8), NOW - timedelta(minutes=1))
    message = device_card(result([alert("da1")], filters=parse_query("ws1 severity:high").filters), CONTEXT, badge)
    assert_sendable(without_watcher(message))
    assert [b["type"] for b in message.blocks[:4]] == ["header", "context", "context", "section"]
    assert context_texts(message, 1) == [
        f":eyes: Watched by <@{WATCHER}> until {mrkdwn.date(NOW + timedelta(hours=8))} · last checked "
        f"{mrkdwn.date(NOW - timedelta(minutes=1), '{time}')}"
    ]
    found = buttons(message)
    assert list(found) == ["Refresh", "Open in Defender", "Unwatch"]
    assert (found["Unwatch"]["action_id"], TEST_SEAL.open(found["Unwatch"]["value"])) == (actions.UNWATCH, MID)
    assert (
        actions.parse_lookup_value(TEST_SEAL.open(found["Refresh"]["value"])).filters
        == parse_query("ws1 severity:high").filters
    )


def test_root_card_before_the_first_check_and_with_a_note() -> None:
    badge = WatchBadge(WATCHER, NOW, None, "Checks slowed to every 2 min: <!here> budget")
    [line] = context_texts(device_card(result([]), CONTEXT, badge), 1)
    assert line.endswith(" · last checked not yet · :hourglass: Checks slowed to every 2 min: &lt;!here&gt; budget")


def test_a_watcher_that_is_not_a_slack_id_is_shown_as_text() -> None:
    badge = WatchBadge("<!channel>", NOW, None)
    message = device_card(result([]), CONTEXT, badge)
    assert_sendable(message)
    assert context_texts(message, 1)[0].startswith(":eyes: Watched by &lt;!channel&gt; until ")
