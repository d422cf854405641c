"""The simulator's Microsoft Graph view, driven through a plain httpx.Client: strict where Graph is strict.

alerts_v2 (`GET /v1.0/security/alerts_v2`) and advanced hunting (`POST /v1.0/security/runHuntingQuery`) over
the same devices and alerts as the Defender view. Each refusal tested here is one Graph makes, so a client
that passes against the simulator has not passed only because the double was lenient.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot.defender.simulator import (
    DUPLICATE_HOSTNAME,
    GRAPH_SIMULATOR_BASE_URL,
    SIMULATOR_BASE_URL,
    SimulatedTenant,
    SimulatorTransport,
)
from bot.defender.simulator.dataset import AAD_TENANT_ID, iso
from bot.defender.simulator.graph import FUTURE
from bot.demo.clock import FakeClock

NOW = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)
GRAPH = GRAPH_SIMULATOR_BASE_URL
ALERTS = "/v1.0/security/alerts_v2"
HUNT = "/v1.0/security/runHuntingQuery"
DEVICE_EVIDENCE = "#microsoft.graph.security.deviceEvidence"
LATEST = "| summarize arg_max(Timestamp, *) by DeviceId | order by Timestamp desc | take 50"

# The enum members Microsoft documents for alerts_v2.
STATUSES = {"unknown", "new", "inProgress", "resolved", "unknownFutureValue"}
SEVERITIES = {"unknown", "informational", "low", "medium", "high", "unknownFutureValue"}
CLASSIFICATIONS = {"unknown", "falsePositive", "truePositive", "informationalExpectedActivity", "unknownFutureValue"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tenant(clock: FakeClock) -> SimulatedTenant:
    return SimulatedTenant(now=lambda: NOW, clock=clock)


@pytest.fixture
def graph(tenant: SimulatedTenant) -> Iterator[httpx.Client]:
    headers = {"Authorization": "Bearer t"}
    with httpx.Client(transport=SimulatorTransport(tenant), base_url=GRAPH, headers=headers) as http:
        yield http


def jwt(audience: str) -> str:
    """An unsigned JWT with this audience: enough for the simulator's audience check."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part({'aud': audience, 'roles': []})}.sig"


def assert_graph_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Graph's error envelope: code, message, and the request id inside innerError (no Defender `target`)."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert re.fullmatch(r"[0-9a-f-]{36}", error["innerError"]["request-id"])
    assert "target" not in error
    return dict(error)


def all_pages(graph: httpx.Client, params: dict[str, str]) -> tuple[list[dict[str, Any]], list[int]]:
    body = graph.get(ALERTS, params=params).json()
    records, sizes = list(body["value"]), [len(body["value"])]
    while "@odata.nextLink" in body:
        body = graph.get(body["@odata.nextLink"]).json()
        records += body["value"]
        sizes.append(len(body["value"]))
    return records, sizes


def hunt(graph: httpx.Client, query: str) -> httpx.Response:
    return graph.post(HUNT, json={"Query": query})


def machine_ids(tenant: SimulatedTenant, hostname: str) -> list[str]:
    return [m["id"] for m in tenant.machines if m["computerDnsName"] == hostname]


# -- alerts_v2: the records ------------------------------------------------------------------------------------------


def test_every_alert_is_there_newest_first_in_graph_shape(tenant: SimulatedTenant, graph: httpx.Client) -> None:
    records, sizes = all_pages(graph, {})
    assert sizes == [len(tenant.alerts)]  # one page: the default page holds 1,000
    assert {r["id"] for r in records} == {a["id"] for a in tenant.alerts}
    created = [r["createdDateTime"] for r in records]
    assert created == sorted(created, key=ticks, reverse=True)
    for record in records:
        assert record["@odata.type"] == "#microsoft.graph.security.alert"
        assert record["status"] in STATUSES and record["severity"] in SEVERITIES
        assert record["classification"] in CLASSIFICATIONS
        assert record["serviceSource"] == "microsoftDefenderForEndpoint"
        assert isinstance(record["mitreTechniques"], list)
        assert record["incidentId"] is None or isinstance(record["incidentId"], str)
        assert record["alertWebUrl"] == f"https://security.microsoft.com/alerts/{record['id']}?tid={AAD_TENANT_ID}"
        assert record["incidentWebUrl"].startswith(f"https://security.microsoft.com/incidents/{record['incidentId']}?")
        assert "machineId" not in record and "alertCreationTime" not in record  # Defender's names do not leak


def test_enum_values_graph_does_not_know_become_unknown_future_value(
    tenant: SimulatedTenant, graph: httpx.Client
) -> None:
    by_id = {r["id"]: r for r in all_pages(graph, {})[0]}
    for alert in tenant.alerts:
        record = by_id[alert["id"]]
        if alert["severity"] == "Critical":
            assert record["severity"] == "unknownFutureValue"
        if alert["severity"] == "UnSpecified":
            assert record["severity"] == "unknown"
        if alert["status"] == "Dismissed":
            assert record["status"] == "unknownFutureValue"
        if alert["status"] == "InProgress":
            assert record["status"] == "inProgress"
        if alert["classification"] is None:
            assert (record["classification"], record["determination"]) == ("unknown", "unknown")
        if alert["determination"] == "InsufficientData":  # the MDE API's name; Graph's differs
            assert record["determination"] == "notEnoughDataToValidate"
        if alert["determination"] == "Clean":
            assert record["determination"] == "notMalicious"
    assert {r["severity"] for r in by_id.values()} >= {"unknownFutureValue", "unknown"}
    assert {r["determination"] for r in by_id.values()} >= {"notEnoughDataToValidate", "notMalicious"}
    assert FUTURE not in {r["determination"] for r in by_id.values()}


def test_evidence_has_a_device_per_device_and_the_related_user(tenant: SimulatedTenant, graph: httpx.Client) -> None:
    records = all_pages(graph, {})[0]
    machines = {m["id"]: m for m in tenant.machines}
    lateral = [r for r in records if r["title"] == "Possible lateral movement using PsExec"]
    assert lateral, "the data set has lateral-movement alerts"
    for record in records:
        alert = next(a for a in tenant.alerts if a["id"] == record["id"])
        devices = [e for e in record["evidence"] if e["@odata.type"] == DEVICE_EVIDENCE]
        assert devices[0]["mdeDeviceId"] == alert["machineId"]  # the alert's own device comes first
        assert len(devices) == (2 if record in lateral else 1)
        for device in devices:
            machine = machines[device["mdeDeviceId"]]
            assert device["deviceDnsName"] == machine["computerDnsName"]
            assert device["rbacGroupName"] == machine["rbacGroupName"]
            assert device["healthStatus"][0].islower() and device["riskScore"][0].islower()
            assert device["firstSeenDateTime"] == machine["firstSeen"]
    assert any(e["@odata.type"].endswith("userEvidence") for r in records for e in r["evidence"])


def test_a_linked_device_shows_in_graph_only(tenant: SimulatedTenant, graph: httpx.Client) -> None:
    alert = tenant.alerts[0]
    other = next(m["id"] for m in tenant.machines if m["id"] != alert["machineId"])
    tenant.link_device(alert["id"], other)
    record = next(r for r in all_pages(graph, {})[0] if r["id"] == alert["id"])
    ids = [e["mdeDeviceId"] for e in record["evidence"] if e["@odata.type"] == DEVICE_EVIDENCE]
    assert ids[0] == alert["machineId"] and other in ids
    with httpx.Client(transport=SimulatorTransport(tenant), base_url=SIMULATOR_BASE_URL) as mde:
        shown = mde.get("/api/alerts", headers={"Authorization": "Bearer t"}).json()["value"]
    assert next(a for a in shown if a["id"] == alert["id"])["machineId"] == alert["machineId"]
    with pytest.raises(KeyError):
        tenant.link_device("no-such-alert", other)


def test_comments_in_graph_names(tenant: SimulatedTenant, graph: httpx.Client) -> None:
    commented = next(a for a in tenant.alerts if a["comments"])
    record = next(r for r in all_pages(graph, {})[0] if r["id"] == commented["id"])
    [comment] = record["comments"]
    source = commented["comments"][0]
    assert comment == {
        "@odata.type": "microsoft.graph.security.alertComment",
        "comment": source["comment"],
        "createdByDisplayName": source["createdBy"],
        "createdDateTime": source["createdTime"],
    }


# -- alerts_v2: $filter ----------------------------------------------------------------------------------------------


def ticks(stamp: str) -> int:
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,7}))?Z", stamp)
    assert match, stamp
    whole = datetime.strptime(match[1], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return int(whole.timestamp()) * 10_000_000 + int((match[2] or "").ljust(7, "0"))


def test_filters_on_the_filterable_properties(tenant: SimulatedTenant, graph: httpx.Client) -> None:
    cutoff = NOW - timedelta(days=3)
    stamp = cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")
    updated, _ = all_pages(graph, {"$filter": f"lastUpdateDateTime ge {stamp}"})
    expected = {a["id"] for a in tenant.alerts if ticks(a["lastUpdateTime"]) >= ticks(stamp)}
    assert {r["id"] for r in updated} == expected and len(updated) == len(expected)
    window = f"createdDateTime ge {stamp} and createdDateTime lt {iso(NOW - timedelta(days=1), 3)}"
    created, _ = all_pages(graph, {"$filter": window})
    assert created and all(ticks(stamp) <= ticks(r["createdDateTime"]) for r in created)
    combined = "status eq 'inProgress' and severity ne 'high' and serviceSource eq 'microsoftDefenderForEndpoint'"
    chosen, _ = all_pages(graph, {"$filter": combined})
    assert chosen and all(r["status"] == "inProgress" and r["severity"] != "high" for r in chosen)
    unassigned, _ = all_pages(graph, {"$filter": "assignedTo eq null and classification eq 'unknown'"})
    assert unassigned and all(r["assignedTo"] is None for r in unassigned)
    by_determination, _ = all_pages(graph, {"$filter": "determination eq 'malware'"})
    assert by_determination and all(r["determination"] == "malware" for r in by_determination)


@pytest.mark.parametrize(
    "expression",
    [
        "title eq 'Suspicious PowerShell command line'",  # not a filterable property
        "lastUpdateTime ge 2026-11-01T00:00:00Z",  # Defender's name for it
        "evidence/any(e: e/mdeDeviceId eq 'abc')",  # the device is only in the evidence: not filterable
        "status eq 'New'",  # Defender's spelling, not a member of Graph's enum
        "severity eq 'critical'",
        "createdDateTime ge '2026-11-01T00:00:00Z'",  # a time is not a string
        "status gt 'new'",
        "status eq 'new' or status eq 'resolved'",  # not modelled
        "startswith(title,'x')",
        "",
    ],
)
def test_anything_else_in_filter_is_400_bad_request(graph: httpx.Client, expression: str) -> None:
    assert_graph_error(graph.get(ALERTS, params={"$filter": expression}), 400, "BadRequest")


# -- alerts_v2: paging and query options -----------------------------------------------------------------------------


def test_top_is_the_page_size_and_at_most_1000(tenant: SimulatedTenant, graph: httpx.Client) -> None:
    records, sizes = all_pages(graph, {"$top": "150"})
    assert sizes == [150, 150, 150, len(tenant.alerts) - 450]
    assert len({r["id"] for r in records}) == len(tenant.alerts)
    assert graph.get(ALERTS, params={"$top": "1000"}).status_code == 200
    error = assert_graph_error(graph.get(ALERTS, params={"$top": "1001"}), 400, "BadRequest")
    assert "1000" in error["message"]
    assert_graph_error(graph.get(ALERTS, params={"$top": "-1"}), 400, "BadRequest")


def test_the_server_pages_below_top_when_its_page_is_smaller(tenant: SimulatedTenant, graph: httpx.Client) -> None:
    tenant.graph_page_size = 250
    _, sizes = all_pages(graph, {"$top": "1000"})
    assert sizes == [250, 250, len(tenant.alerts) - 500]


def test_next_link_repeats_the_query_with_an_opaque_skiptoken(graph: httpx.Client) -> None:
    first = graph.get(ALERTS, params={"$top": "100", "$filter": "status eq 'new'"}).json()
    link = httpx.URL(first["@odata.nextLink"])
    assert link.host == "graph.simulator.invalid" and link.path == ALERTS
    assert (link.params["$top"], link.params["$filter"]) == ("100", "status eq 'new'")
    token = link.params["$skiptoken"]
    assert not token.isdigit()
    second = graph.get(link).json()
    assert not {r["id"] for r in first["value"]} & {r["id"] for r in second["value"]}
    other_query = link.copy_set_param("$filter", "status eq 'resolved'")
    assert_graph_error(graph.get(other_query), 400, "BadRequest")
    assert_graph_error(graph.get(link.copy_set_param("$skiptoken", "100")), 400, "BadRequest")
    assert_graph_error(graph.get(link.copy_set_param("$skiptoken", token[:-2] + "xx")), 400, "BadRequest")


def test_skip_and_count_work_other_options_are_refused(tenant: SimulatedTenant, graph: httpx.Client) -> None:
    everything = graph.get(ALERTS).json()["value"]
    skipped = graph.get(ALERTS, params={"$skip": "10", "$top": "5", "$count": "true"}).json()
    assert [r["id"] for r in skipped["value"]] == [r["id"] for r in everything[10:15]]
    assert skipped["@odata.count"] == len(tenant.alerts)
    for option in ("$orderby", "$select", "$expand", "$search"):
        assert_graph_error(graph.get(ALERTS, params={option: "id"}), 400, "BadRequest")


def test_wrong_methods_are_refused(graph: httpx.Client) -> None:
    assert graph.post(ALERTS, json={}).status_code == 405
    assert graph.get(HUNT).status_code == 405


# -- hunting ---------------------------------------------------------------------------------------------------------


def test_device_info_has_several_rows_per_device_newest_first(tenant: SimulatedTenant, graph: httpx.Client) -> None:
    name = "srv-dc-01.contoso.local"
    answer = hunt(graph, f"DeviceInfo | where DeviceName =~ '{name.upper()}' | take 100").json()
    rows = answer["results"]
    assert len(rows) == 3 and {r["DeviceId"] for r in rows} == set(machine_ids(tenant, name))
    assert [r["Timestamp"] for r in rows] == sorted((r["Timestamp"] for r in rows), reverse=True)
    assert rows[0]["SensorHealthState"] == "Active" and rows[1]["SensorHealthState"] != "Active"
    assert {"name": "Timestamp", "type": "DateTime"} in answer["schema"]
    assert json.loads(rows[0]["DeviceManualTags"]) == ["DomainController", "Tier0"]


def test_summarize_keeps_the_latest_row_per_device(tenant: SimulatedTenant, graph: httpx.Client) -> None:
    rows = hunt(graph, f"DeviceInfo | where DeviceName startswith 'LT-' {LATEST}").json()["results"]
    names = [r["DeviceName"] for r in rows]
    assert len(rows) == len({r["DeviceId"] for r in rows}) and all(n.startswith("lt-") for n in names)
    newest = {m["id"]: m for m in tenant.machines}
    for row in rows:
        assert ticks(row["Timestamp"]) == ticks(newest[row["DeviceId"]]["lastSeen"]) // 10 * 10
        assert row["SensorHealthState"] == newest[row["DeviceId"]]["healthStatus"]
    assert [r["Timestamp"] for r in rows] == sorted((r["Timestamp"] for r in rows), reverse=True)
    summarized = "DeviceInfo | where DeviceName startswith 'lt-' | summarize arg_max(Timestamp, *) by DeviceId"
    unordered = hunt(graph, f"{summarized} | take 50").json()["results"]
    assert [r["DeviceId"] for r in unordered] == sorted(r["DeviceId"] for r in unordered)  # no order promised


def test_only_the_last_30_days_are_there(tenant: SimulatedTenant, graph: httpx.Client) -> None:
    query = f"DeviceInfo | where DeviceName =~ '{DUPLICATE_HOSTNAME}' {LATEST}"
    new, old = sorted(
        (m for m in tenant.machines if m["computerDnsName"] == DUPLICATE_HOSTNAME), key=lambda m: -ticks(m["lastSeen"])
    )
    assert [r["DeviceId"] for r in hunt(graph, query).json()["results"]] == [new["id"]]  # the other: 40 days ago
    old["lastSeen"] = iso(NOW - timedelta(days=10))
    rows = hunt(graph, query).json()["results"]
    assert {r["DeviceId"] for r in rows} == set(machine_ids(tenant, DUPLICATE_HOSTNAME))
    assert rows[-1]["DeviceId"] == old["id"]  # seen longest ago: last


def test_by_id_is_case_sensitive_like_kql(tenant: SimulatedTenant, graph: httpx.Client) -> None:
    machine_id = tenant.machines[0]["id"]
    found = hunt(graph, f'DeviceInfo | where DeviceId == "{machine_id}" {LATEST}').json()["results"]
    assert [r["DeviceId"] for r in found] == [machine_id]
    assert hunt(graph, f"DeviceInfo | where DeviceId == '{machine_id.upper()}' {LATEST}").json()["results"] == []


@pytest.mark.parametrize(
    "query",
    [
        "DeviceInfo | take 10",  # no where
        "DeviceInfo | where DeviceName =~ 'x'",  # unbounded
        "DeviceInfo | where DeviceName =~ 'x' | take 0",
        "DeviceInfo | where DeviceName =~ 'x' | take 100001",
        "DeviceInfo | where DeviceName contains 'x' | take 10",
        "DeviceInfo | where OSPlatform == 'Linux' | take 10",
        "DeviceProcessEvents | where DeviceName =~ 'x' | take 10",
        "DeviceInfo | where DeviceName =~ 'x' | project DeviceId | take 10",
        "DeviceInfo | where DeviceName =~ x | take 10",
    ],
)
def test_other_queries_are_400_bad_request(graph: httpx.Client, query: str) -> None:
    assert_graph_error(hunt(graph, query), 400, "BadRequest")


def test_the_body_must_be_json_with_the_query_alone(graph: httpx.Client) -> None:
    good = "DeviceInfo | where DeviceName =~ 'x' | take 1"
    assert hunt(graph, good).status_code == 200
    assert_graph_error(graph.post(HUNT, json={"Query": good, "Timespan": "P90D"}), 400, "BadRequest")
    assert_graph_error(graph.post(HUNT, json={"query": good}), 400, "BadRequest")
    assert_graph_error(graph.post(HUNT, content=good, headers={"Content-Type": "text/plain"}), 400, "BadRequest")
    assert_graph_error(graph.post(HUNT, content=b"{", headers={"Content-Type": "application/json"}), 400, "BadRequest")


# -- limits, faults, tokens, permissions -----------------------------------------------------------------------------


def test_each_graph_api_has_its_own_per_minute_limit(
    tenant: SimulatedTenant, graph: httpx.Client, clock: FakeClock
) -> None:
    for _ in range(150):
        assert graph.get(ALERTS, params={"$top": "1"}).status_code == 200
    throttled = graph.get(ALERTS, params={"$top": "1"})
    assert_graph_error(throttled, 429, "TooManyRequests")
    assert throttled.headers["Retry-After"] == "60"
    query = "DeviceInfo | where DeviceName =~ 'x' | take 1"
    for _ in range(45):
        assert hunt(graph, query).status_code == 200  # counted apart from alerts_v2
    assert_graph_error(hunt(graph, query), 429, "TooManyRequests")
    clock.advance(30)
    assert graph.get(ALERTS, params={"$top": "1"}).headers["Retry-After"] == "30"
    clock.advance(30)
    assert graph.get(ALERTS, params={"$top": "1"}).status_code == 200
    assert hunt(graph, query).status_code == 200


def test_fail_next_answers_in_graph_shape(tenant: SimulatedTenant, graph: httpx.Client) -> None:
    tenant.fail_next(503)
    assert_graph_error(graph.get(ALERTS), 503, "ServiceUnavailable")
    tenant.fail_next(429, retry_after=7)
    throttled = hunt(graph, "DeviceInfo | where DeviceName =~ 'x' | take 1")
    assert_graph_error(throttled, 429, "TooManyRequests")
    assert throttled.headers["Retry-After"] == "7"
    tenant.fail_next(401)
    assert_graph_error(graph.get(ALERTS), 401, "InvalidAuthenticationToken")
    assert graph.get(ALERTS).status_code == 200


def test_a_token_for_another_api_is_refused(tenant: SimulatedTenant) -> None:
    def get(token: str) -> httpx.Response:
        with httpx.Client(transport=SimulatorTransport(tenant), base_url=GRAPH) as http:
            return http.get(ALERTS, headers={"Authorization": f"Bearer {token}"})

    error = assert_graph_error(get(jwt("https://api.securitycenter.microsoft.com")), 401, "InvalidAuthenticationToken")
    assert "audience" in error["message"]
    for audience in (
        "https://graph.microsoft.com",
        "https://graph.microsoft.us/",
        "00000003-0000-0000-c000-000000000000",
    ):
        assert get(jwt(audience)).status_code == 200, audience
    assert get("").status_code == 401


def test_a_missing_permission_is_403_without_naming_it(tenant: SimulatedTenant, graph: httpx.Client) -> None:
    tenant.graph_roles.discard("ThreatHunting.Read.All")
    error = assert_graph_error(hunt(graph, "DeviceInfo | where DeviceName =~ 'x' | take 1"), 403, "Forbidden")
    assert "ThreatHunting" not in error["message"]
    assert graph.get(ALERTS, params={"$top": "1"}).status_code == 200
    tenant.graph_roles.clear()
    assert_graph_error(graph.get(ALERTS), 403, "Forbidden")
