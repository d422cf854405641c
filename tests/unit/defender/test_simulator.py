"""The built-in Defender simulator, driven through a real httpx.Client exactly as the bot's client drives it."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.defender.simulator import (
    BUSY_HOSTNAME,
    DUPLICATE_HOSTNAME,
    HOSTILE_HOSTNAME,
    QUIET_HOSTNAME,
    SIMULATOR_BASE_URL,
    SimulatedTenant,
    SimulatorTransport,
)
from bot.demo.clock import FakeClock

NOW = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)
ALERTS_CONTEXT = "https://api.security.microsoft.com/api/$metadata#Alerts"
MACHINES_CONTEXT = "https://api.security.microsoft.com/api/$metadata#Machines"
TOKEN = "t"  # any non-empty bearer token is accepted


def make_client(tenant: SimulatedTenant, token: str | None = TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.Client(transport=SimulatorTransport(tenant), base_url=SIMULATOR_BASE_URL, headers=headers)


@pytest.fixture
def tenant() -> SimulatedTenant:
    return SimulatedTenant(now=lambda: NOW)


@pytest.fixture
def client(tenant: SimulatedTenant) -> Iterator[httpx.Client]:
    with make_client(tenant) as http:
        yield http


def machine(tenant: SimulatedTenant, hostname: str) -> dict[str, Any]:
    """The (newest) record for a hostname, straight from the tenant's raw data."""
    return max((m for m in tenant.machines if m["computerDnsName"] == hostname), key=lambda m: str(m["lastSeen"]))


def ticks(stamp: str) -> int:
    """Exact 100 ns ticks of a Defender timestamp, independent of the simulator's own parser."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,7}))?Z", stamp)
    assert match, stamp
    whole = datetime.strptime(match[1], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return int(whole.timestamp()) * 10_000_000 + int((match[2] or "").ljust(7, "0"))


def collect(client: httpx.Client, path: str, params: dict[str, str] | None = None) -> tuple[list[Any], list[int]]:
    """Follow @odata.nextLink to the end; returns all records and the size of each page."""
    records: list[Any] = []
    sizes: list[int] = []
    url: str | None = path
    while url is not None:
        response = client.get(url, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        records.extend(body["value"])
        sizes.append(len(body["value"]))
        url, params = body.get("@odata.nextLink"), None
        assert len(sizes) < 200, "nextLink never ends"
    return records, sizes


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert uuid.UUID(error["target"]).version == 4


# -- envelope, lookup, auth --------------------------------------------------------------------------------------------


def test_machine_alerts_envelope(tenant: SimulatedTenant, client: httpx.Client) -> None:
    target = machine(tenant, "ws-fin-014.contoso.local")
    response = client.get(f"/api/machines/{target['id']}/alerts")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["@odata.context"] == ALERTS_CONTEXT
    assert "@odata.nextLink" not in body
    expected = [a for a in tenant.alerts if a["machineId"] == target["id"]]
    assert len(expected) == 8
    assert body["value"] == expected


def test_zero_alert_device_returns_empty_list(tenant: SimulatedTenant, client: httpx.Client) -> None:
    response = client.get(f"/api/machines/{machine(tenant, QUIET_HOSTNAME)['id']}/alerts")
    assert response.status_code == 200
    assert response.json() == {"@odata.context": ALERTS_CONTEXT, "value": []}


def test_unknown_machine_is_404(client: httpx.Client) -> None:
    assert_error(client.get(f"/api/machines/{'0' * 40}/alerts"), 404, "ResourceNotFound")
    assert_error(client.get("/api/machines/no-such-host.contoso.local"), 404, "ResourceNotFound")


def test_machine_alerts_need_an_id_not_a_name(client: httpx.Client) -> None:
    assert_error(client.get("/api/machines/ws-fin-014.contoso.local/alerts"), 404, "ResourceNotFound")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic dXNlcjpwdw=="}])
def test_requests_without_bearer_token_are_401(tenant: SimulatedTenant, headers: dict[str, str]) -> None:
    with make_client(tenant, token=None) as anonymous:
        assert_error(anonymous.get("/api/alerts", headers=headers), 401, "Unauthorized")


def test_lookup_by_id_and_case_insensitive_name(tenant: SimulatedTenant, client: httpx.Client) -> None:
    target = machine(tenant, "srv-sql-02.contoso.local")
    by_id = client.get(f"/api/machines/{target['id']}").json()
    by_name = client.get("/api/machines/SRV-SQL-02.Contoso.LOCAL").json()
    assert by_id["id"] == by_name["id"] == target["id"]
    assert by_name["computerDnsName"] == "srv-sql-02.contoso.local"
    assert by_name["osPlatform"] == "WindowsServer2022"


def test_free_text_device_name_round_trips_through_the_path(client: httpx.Client) -> None:
    response = client.get("/api/machines/pixel 8 (j. doe)")
    assert response.status_code == 200
    assert response.json()["computerDnsName"] == "Pixel 8 (J. Doe)"
    assert response.json()["osPlatform"] == "Android"


def test_duplicate_hostname_by_path_answers_a_stale_record(tenant: SimulatedTenant, client: httpx.Client) -> None:
    """Which record GET /api/machines/{name} returns is undocumented: the simulator returns the stalest one."""
    records = [m for m in tenant.machines if m["computerDnsName"] == DUPLICATE_HOSTNAME]
    assert len(records) == 2
    assert records[0]["id"] != records[1]["id"]
    stalest = min(records, key=lambda m: ticks(m["lastSeen"]))
    found = client.get(f"/api/machines/{DUPLICATE_HOSTNAME.upper()}").json()
    assert found["id"] == stalest["id"]
    assert found["healthStatus"] == "Inactive"


def test_encoded_slash_in_a_segment_matches_nothing(tenant: SimulatedTenant, client: httpx.Client) -> None:
    target = machine(tenant, "ws-fin-014.contoso.local")
    assert_error(client.get(f"/api/machines/{target['id']}%2Falerts"), 404, "ResourceNotFound")
    assert client.get(f"/api/machines/{target['id']}/alerts").status_code == 200


def test_unknown_route_and_wrong_method(client: httpx.Client) -> None:
    assert_error(client.get("/api/incidents"), 404, "ResourceNotFound")
    response = client.post("/api/alerts", json={})
    assert_error(response, 405, "MethodNotAllowed")
    assert response.headers["Allow"] == "GET"


# -- machine filters ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("computerDnsName eq 'pat o''brien''s iphone'", {"Pat O'Brien's iPhone"}),
        ("startswith(computerDnsName,'PAT O''B')", {"Pat O'Brien's iPhone"}),
        ("startswith(computerDnsName, 'ws-fin-')", {"ws-fin-014.contoso.local", "ws-fin-015.contoso.local"}),
        ("computerDnsName eq 'MAC-DESIGN-07'", {"mac-design-07"}),
        ("computerDnsName eq 'nobody'", set()),
    ],
)
def test_machine_filters(client: httpx.Client, expression: str, expected: set[str]) -> None:
    body = client.get("/api/machines", params={"$filter": expression}).json()
    assert body["@odata.context"] == MACHINES_CONTEXT
    assert {m["computerDnsName"] for m in body["value"]} == expected


def test_machine_filter_returns_both_duplicate_records(client: httpx.Client) -> None:
    body = client.get("/api/machines", params={"$filter": f"computerDnsName eq '{DUPLICATE_HOSTNAME}'"}).json()
    assert len(body["value"]) == 2


def test_machines_without_filter_lists_all(tenant: SimulatedTenant, client: httpx.Client) -> None:
    assert client.get("/api/machines").json()["value"] == tenant.machines


@pytest.mark.parametrize("expression", ["osPlatform eq 'Linux'", "computerDnsName eq 'unterminated", "contains(x,'a')"])
def test_unsupported_machine_filter_is_400(client: httpx.Client, expression: str) -> None:
    assert_error(client.get("/api/machines", params={"$filter": expression}), 400, "ODataError")


@cache
def read_only_tenant() -> SimulatedTenant:
    """One tenant shared by property-test examples (building one per example is slow); never mutated."""
    return SimulatedTenant(now=lambda: NOW, calls_per_minute=1_000_000)


@settings(max_examples=75, deadline=None)
@given(name=st.text(max_size=30))
def test_any_quoted_literal_is_accepted(name: str) -> None:
    tenant = read_only_tenant()
    literal = name.replace("'", "''")
    with make_client(tenant) as http:
        response = http.get("/api/machines", params={"$filter": f"computerDnsName eq '{literal}'"})
    assert response.status_code == 200
    expected = [m for m in tenant.machines if m["computerDnsName"].casefold() == name.casefold()]
    assert response.json()["value"] == expected


# -- alert filters and paging ------------------------------------------------------------------------------------------


def test_alerts_updated_since_filter(tenant: SimulatedTenant, client: httpx.Client) -> None:
    cutoff = NOW - timedelta(days=3)
    records, _ = collect(client, "/api/alerts", {"$filter": f"lastUpdateTime ge {cutoff:%Y-%m-%dT%H:%M:%S}Z"})
    expected = {a["id"] for a in tenant.alerts if ticks(a["lastUpdateTime"]) >= ticks(f"{cutoff:%Y-%m-%dT%H:%M:%S}Z")}
    assert 0 < len(expected) < len(tenant.alerts)
    assert {r["id"] for r in records} == expected
    assert len(records) == len(expected)


def test_updated_since_boundary_is_exact_to_the_tick(tenant: SimulatedTenant, client: httpx.Client) -> None:
    stamp = next(a["lastUpdateTime"] for a in tenant.alerts if re.search(r"\.\d{7}Z$", a["lastUpdateTime"]))
    alert_id = next(a["id"] for a in tenant.alerts if a["lastUpdateTime"] == stamp)
    later = f"{stamp[:-2]}{int(stamp[-2]) + 1}Z" if stamp[-2] != "9" else None
    assert later is not None, "data set changed: pick an alert whose 7th digit is not 9"
    at, _ = collect(client, "/api/alerts", {"$filter": f"lastUpdateTime ge {stamp}"})
    after, _ = collect(client, "/api/alerts", {"$filter": f"lastUpdateTime ge {later}"})
    assert alert_id in {r["id"] for r in at}
    assert alert_id not in {r["id"] for r in after}


@pytest.mark.parametrize(
    "stamp",
    ["2026-11-26T10:00:00Z", "2026-11-26T10:00:00.1Z", "2026-11-26T10:00:00.123Z", "2026-11-26T10:00:00.1234567Z"],
)
def test_updated_since_accepts_0_to_7_fraction_digits(client: httpx.Client, stamp: str) -> None:
    assert client.get("/api/alerts", params={"$filter": f"lastUpdateTime ge {stamp}"}).status_code == 200


@pytest.mark.parametrize(
    "expression",
    [
        "lastUpdateTime ge 2026-11-26T10:00:00.12345678Z",
        "lastUpdateTime ge '2026-11-26'",
        "status eq New",
        "title eq 'x'",
        "status eq 'New' or severity eq 'High'",
        "status eq 'New' and",
    ],
)
def test_unsupported_alert_filter_is_400(client: httpx.Client, expression: str) -> None:
    assert_error(client.get("/api/alerts", params={"$filter": expression}), 400, "ODataError")


def test_machine_alert_status_and_severity_filters(tenant: SimulatedTenant, client: httpx.Client) -> None:
    busy = machine(tenant, BUSY_HOSTNAME)
    path = f"/api/machines/{busy['id']}/alerts"
    mine = [a for a in tenant.alerts if a["machineId"] == busy["id"]]
    cases = {
        "status eq 'New'": lambda a: a["status"] == "New",
        "status ne 'Resolved'": lambda a: a["status"] != "Resolved",
        "status ne 'Resolved' and severity eq 'High'": lambda a: a["status"] != "Resolved" and a["severity"] == "High",
    }
    for expression, keep in cases.items():
        records, _ = collect(client, path, {"$filter": expression})
        expected = [a["id"] for a in mine if keep(a)]
        assert 0 < len(expected) < len(mine), expression
        assert [r["id"] for r in records] == expected, expression


def test_all_500_alerts_of_busy_device_come_in_one_page(tenant: SimulatedTenant, client: httpx.Client) -> None:
    busy = machine(tenant, BUSY_HOSTNAME)
    records, sizes = collect(client, f"/api/machines/{busy['id']}/alerts")
    assert sizes == [500]  # Defender's pages hold 10,000
    assert len({r["id"] for r in records}) == 500
    assert all(r["machineId"] == busy["id"] for r in records)


def test_top_caps_results_without_a_next_link(tenant: SimulatedTenant, client: httpx.Client) -> None:
    body = client.get("/api/alerts", params={"$top": "5"}).json()
    assert [a["id"] for a in body["value"]] == [a["id"] for a in tenant.alerts[:5]]
    assert "@odata.nextLink" not in body
    records, sizes = collect(client, "/api/alerts", {"$top": "450"})
    assert (len(records), sizes) == (450, [450])
    skipped = client.get("/api/alerts", params={"$skip": "3", "$top": "2"}).json()
    assert [a["id"] for a in skipped["value"]] == [a["id"] for a in tenant.alerts[3:5]]
    assert client.get("/api/alerts", params={"$skip": "100000"}).json()["value"] == []
    for bad in ("10001", "-1", "many"):
        assert_error(client.get("/api/alerts", params={"$top": bad}), 400, "ODataError")
    assert_error(client.get("/api/alerts", params={"$skip": "x"}), 400, "ODataError")
    assert_error(client.get("/api/alerts", params={"$skiptoken": "200"}), 400, "ODataError")


# -- rate limit and fault injection ------------------------------------------------------------------------------------


def test_rate_limit_per_api_with_sliding_window() -> None:
    clock = FakeClock()
    tenant = SimulatedTenant(now=lambda: NOW, calls_per_minute=3, clock=clock)
    with make_client(tenant) as http:
        for _ in range(3):
            assert http.get("/api/alerts").status_code == 200
            clock.now += 0.5
        throttled = http.get("/api/alerts")
        assert_error(throttled, 429, "TooManyRequests")
        assert throttled.headers["Retry-After"] == "59"  # the first call (t=1000) frees its slot at t=1060
        assert http.get("/api/machines").status_code == 200  # each API has its own counter
        clock.now = 1_059.9
        assert int(http.get("/api/alerts").headers["Retry-After"]) == 1  # never below one second
        clock.now = 1_060.0
        assert http.get("/api/alerts").status_code == 200
        clock.now += 60
        assert [http.get("/api/alerts").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_rejected_calls_do_not_consume_the_window() -> None:
    clock = FakeClock()
    tenant = SimulatedTenant(now=lambda: NOW, calls_per_minute=1, clock=clock)
    with make_client(tenant) as http:
        assert http.get("/api/alerts").status_code == 200
        for _ in range(5):
            assert http.get("/api/alerts").status_code == 429
        clock.now += 60
        assert http.get("/api/alerts").status_code == 200


def test_fail_next_injects_defender_errors(tenant: SimulatedTenant, client: httpx.Client) -> None:
    tenant.fail_next(503, times=2)
    assert_error(client.get("/api/alerts"), 503, "ServiceUnavailable")
    assert_error(client.get("/api/machines"), 503, "ServiceUnavailable")
    assert client.get("/api/alerts").status_code == 200
    tenant.fail_next(429, retry_after=7)
    throttled = client.get("/api/alerts")
    assert_error(throttled, 429, "TooManyRequests")
    assert throttled.headers["Retry-After"] == "7"
    tenant.fail_next(403, code="Forbidden")
    assert_error(client.get("/api/alerts"), 403, "Forbidden")
    tenant.fail_next(500, code="InternalError")
    assert_error(client.get("/api/alerts"), 500, "InternalError")
    assert client.get("/api/alerts").status_code == 200


# -- data set ----------------------------------------------------------------------------------------------------------


def test_hostile_device_alerts_reach_the_client_verbatim(tenant: SimulatedTenant, client: httpx.Client) -> None:
    alerts = client.get(f"/api/machines/{machine(tenant, HOSTILE_HOSTNAME)['id']}/alerts").json()["value"]
    titles = [a["title"] for a in alerts]
    assert "<!channel> Urgent: <https://evil.example/login|Reset your password>" in titles
    assert "<@U024BE7LH> & <!here> <!subteam^S123>" in titles
    assert any("\u202e" in t and "\u200b" in t for t in titles)
    assert any("\x1b[31m" in t for t in titles)
    assert any(len(t) > 200 for t in titles)
    long = [a["description"] for a in alerts if len(a["description"]) == 10_000]
    assert len(long) == 1
    assert "\n" in long[0]
    assert any("<script>" in (a["assignedTo"] or "") for a in alerts)


def test_data_set_covers_every_enum_and_shape(tenant: SimulatedTenant) -> None:
    alerts = tenant.alerts
    assert {a["severity"] for a in alerts} >= {"UnSpecified", "Informational", "Low", "Medium", "High"}
    assert {a["status"] for a in alerts} >= {"New", "InProgress", "Resolved", "Unknown"}
    assert {a["severity"] for a in alerts} - {"UnSpecified", "Informational", "Low", "Medium", "High"}
    assert {a["classification"] for a in alerts} == {
        None,
        "TruePositive",
        "InformationalExpectedActivity",
        "FalsePositive",
    }
    assert {a["category"] for a in alerts} >= {
        "SuspiciousActivity",
        "Malware",
        "Execution",
        "CredentialAccess",
        "LateralMovement",
        "Persistence",
    }
    assert {a["detectionSource"] for a in alerts} >= {
        "WindowsDefenderAtp",
        "WindowsDefenderAv",
        "AutomatedInvestigation",
        "CustomDetection",
    }
    assert {type(a["mitreTechniques"]) for a in alerts} == {list, str}
    assert {type(a["relatedUser"]) for a in alerts} == {dict, str, type(None)}
    assert any(a["comments"] for a in alerts)
    assert any(a["assignedTo"] is None for a in alerts)
    stamps = [a[key] for a in alerts for key in ("alertCreationTime", "lastUpdateTime") if a[key]]
    digits = {len(m[1] or "") for m in (re.fullmatch(r"\S+?(?:\.(\d+))?Z", s) for s in stamps) if m}
    assert digits == {0, 1, 3, 7}
    assert all(ticks(a["resolvedTime"]) for a in alerts if a["status"] == "Resolved")
    ids = [a["id"] for a in alerts]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z]{2}\d{18}_-?\d{1,10}", i) for i in ids)
    assert any("_-" in i for i in ids)


def test_alert_timelines_are_consistent(tenant: SimulatedTenant) -> None:
    for alert in tenant.alerts:
        first, last, created, updated = (
            ticks(alert[key]) for key in ("firstEventTime", "lastEventTime", "alertCreationTime", "lastUpdateTime")
        )
        assert first <= last <= created <= updated <= ticks(f"{NOW:%Y-%m-%dT%H:%M:%S}.9999999Z"), alert["id"]
        if alert["status"] == "Resolved":
            assert alert["resolvedTime"] == alert["lastUpdateTime"], alert["id"]
        elif alert["status"] == "New":
            assert (alert["resolvedTime"], alert["classification"], alert["comments"]) == (None, None, []), alert["id"]
        assert all(created <= ticks(c["createdTime"]) <= updated for c in alert["comments"]), alert["id"]


def test_machines_look_like_defender_records(tenant: SimulatedTenant) -> None:
    machines = tenant.machines
    assert 18 <= len(machines) <= 25
    assert all(re.fullmatch(r"[0-9a-f]{40}", m["id"]) for m in machines)
    assert len({m["id"] for m in machines}) == len(machines)
    assert {m["osPlatform"] for m in machines} >= {
        "Windows10",
        "Windows11",
        "WindowsServer2022",
        "macOS",
        "Linux",
        "Android",
    }
    assert {m["healthStatus"] for m in machines} >= {"Active", "Inactive", "ImpairedCommunication", "NoSensorData"}
    assert {m["riskScore"] for m in machines} == {"None", "Low", "Medium", "High"}
    per_device = {m["id"]: sum(a["machineId"] == m["id"] for a in tenant.alerts) for m in machines}
    assert per_device[machine(tenant, BUSY_HOSTNAME)["id"]] == 500
    assert per_device[machine(tenant, QUIET_HOSTNAME)["id"]] == 0
    assert sum(1 for count in per_device.values() if count <= 12) >= len(machines) - 1


def test_data_set_is_deterministic() -> None:
    first, second = SimulatedTenant(now=lambda: NOW), SimulatedTenant(now=lambda: NOW)
    assert first.machines == second.machines
    assert first.alerts == second.alerts
    assert [m["id"] for m in SimulatedTenant.default().machines] == [m["id"] for m in first.machines]


# -- helpers, logging, concurrency -------------------------------------------------------------------------------------


def test_add_alert_and_set_status_show_up_in_incremental_polls(tenant: SimulatedTenant, client: httpx.Client) -> None:
    quiet = machine(tenant, QUIET_HOSTNAME)
    added = tenant.add_alert(quiet["id"], title="Fresh alert", severity="High")
    listed = client.get(f"/api/machines/{quiet['id']}/alerts").json()["value"]
    assert [(a["id"], a["title"], a["severity"], a["computerDnsName"]) for a in listed] == [
        (added["id"], "Fresh alert", "High", QUIET_HOSTNAME)
    ]
    cutoff = ticks("2026-11-20T00:00:00Z")
    old = next(a for a in tenant.alerts if a["status"] == "New" and ticks(a["lastUpdateTime"]) < cutoff)
    since = {"$filter": "lastUpdateTime ge 2026-11-27T11:59:00Z"}
    assert old["id"] not in {a["id"] for a in collect(client, "/api/alerts", since)[0]}
    updated = tenant.set_alert_status(old["id"], "Resolved", classification="TruePositive")
    assert updated["lastUpdateTime"] == updated["resolvedTime"] == "2026-11-27T12:00:00.1234560Z"
    polled = {a["id"]: a for a in collect(client, "/api/alerts", since)[0]}
    assert polled[old["id"]]["status"] == "Resolved"
    assert polled[old["id"]]["classification"] == "TruePositive"
    with pytest.raises(KeyError):
        tenant.add_alert("0" * 40)
    with pytest.raises(KeyError):
        tenant.set_alert_status("nope", "Resolved")


def test_request_log_records_decoded_path_and_query(tenant: SimulatedTenant, client: httpx.Client) -> None:
    client.get("/api/machines", params={"$filter": "computerDnsName eq 'a b'"})
    client.get("/api/machines/Pixel 8 (J. Doe)")
    assert tenant.request_log == [
        ("GET", "/api/machines?$filter=computerDnsName eq 'a b'"),
        ("GET", "/api/machines/Pixel 8 (J. Doe)"),
    ]
    assert tenant.calls == 2


def test_concurrent_clients_are_all_counted(tenant: SimulatedTenant) -> None:
    tenant.calls_per_minute = 10_000
    busy_id = machine(tenant, BUSY_HOSTNAME)["id"]
    statuses: list[int] = []

    def worker() -> None:
        with make_client(tenant) as http:
            for _ in range(20):
                statuses.append(http.get(f"/api/machines/{busy_id}/alerts").status_code)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 160
    assert tenant.calls == len(tenant.request_log) == 160


def test_latency_is_applied_per_request() -> None:
    tenant = SimulatedTenant(now=lambda: NOW, latency=0.05)
    with make_client(tenant) as http:
        started = time.perf_counter()
        assert http.get("/api/machines").status_code == 200
    assert time.perf_counter() - started >= 0.05
