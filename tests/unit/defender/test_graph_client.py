"""The Microsoft Graph client against the simulator's Graph view, through the httpx transport.

The same tenant answers the Defender client too, so each Graph answer can be checked against what the Defender
API says about the same alert or device: the two clients must map them into the same models.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot.defender.auth import StaticTokenProvider
from bot.defender.client import DefenderClient
from bot.defender.clouds import Cloud
from bot.defender.errors import (
    AuthError,
    BadResponse,
    DefenderUnavailable,
    DeviceNotFound,
    InvalidDeviceReference,
    PermissionDenied,
    Throttled,
)
from bot.defender.graph import GraphClient, device_query, kql_string, token_audience
from bot.defender.limits import Api, BudgetExhausted, Priority
from bot.defender.models import Alert, AlertDevice, AlertStatus, HealthStatus, Severity, parse_alert
from bot.defender.simulator import (
    AAD_TENANT_ID,
    BUSY_HOSTNAME,
    DUPLICATE_HOSTNAME,
    GRAPH_SIMULATOR_BASE_URL,
    QUIET_HOSTNAME,
    SIMULATOR_BASE_URL,
    SimulatedTenant,
    SimulatorTransport,
)
from bot.defender.simulator.dataset import iso
from bot.demo.clock import FakeClock
from bot.state.budget import RateBudget
from bot.state.redis.codec import Packer

NOW = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)
GRAPH = GRAPH_SIMULATOR_BASE_URL
LONG_AGO = NOW - timedelta(days=60)


class Tokens:
    """Hands out one token (the same after each invalidation) and counts invalidations."""

    def __init__(self, issued: str = "graph-token") -> None:
        self.value = issued
        self.invalidated = 0

    def token(self) -> str:
        return self.value

    def invalidate(self) -> None:
        self.invalidated += 1


def jwt(audience: str) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part({'aud': audience})}.sig"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tenant(clock: FakeClock) -> SimulatedTenant:
    return SimulatedTenant(now=lambda: NOW, clock=clock)


class Recording(SimulatorTransport):
    """The simulator's transport, keeping each hunting query the client sent."""

    def __init__(self, tenant: SimulatedTenant) -> None:
        super().__init__(tenant)
        self.queries: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.queries.append(json.loads(request.content)["Query"])
        return super().handle_request(request)


def graph_client(tenant: SimulatedTenant, clock: FakeClock, base: str = GRAPH, **options: Any) -> GraphClient:
    tokens = options.pop("tokens", None) or Tokens()
    transport = Recording(tenant)
    graph = GraphClient(base, tokens, transport=transport, clock=clock, sleep=clock.sleep, **options)
    TRANSPORTS[id(graph)] = transport
    return graph


TRANSPORTS: dict[int, Recording] = {}


def sent_queries(graph: GraphClient) -> list[str]:
    return TRANSPORTS[id(graph)].queries


@pytest.fixture
def client(tenant: SimulatedTenant, clock: FakeClock) -> Iterator[GraphClient]:
    with graph_client(tenant, clock) as graph:
        yield graph


@pytest.fixture
def defender(tenant: SimulatedTenant, clock: FakeClock) -> Iterator[DefenderClient]:
    transport = SimulatorTransport(tenant)
    with DefenderClient(
        SIMULATOR_BASE_URL, StaticTokenProvider("t"), transport=transport, clock=clock, sleep=clock.sleep
    ) as mde:
        yield mde


def newest_id(tenant: SimulatedTenant, hostname: str) -> str:
    found = [m for m in tenant.machines if m["computerDnsName"] == hostname]
    return str(max(found, key=lambda m: str(m["lastSeen"]))["id"])


# -- alerts ----------------------------------------------------------------------------------------------------------


def test_reads_every_page_and_counts_each_against_the_graph_alerts_budget(
    tenant: SimulatedTenant, clock: FakeClock
) -> None:
    budget = RateBudget(clock=clock)
    with graph_client(tenant, clock, gate=budget, page_size=100) as graph:
        read = graph.alerts_updated_since(LONG_AGO)
    assert read.complete
    assert len(read.alerts) == len(tenant.alerts) == 562
    pages = (len(tenant.alerts) + 99) // 100
    assert [path.split("?")[0] for _, path in tenant.request_log] == ["/v1.0/security/alerts_v2"] * pages
    assert all("$top=100" in path for _, path in tenant.request_log)
    assert budget.usage(Api.GRAPH_ALERTS).used_last_minute == pages
    assert budget.usage(Api.ALERTS).used_last_minute == 0
    created = [a.created for a in read.alerts]
    assert created == sorted(created, reverse=True)  # as Graph lists them: newest first


def test_a_retry_and_every_page_pass_the_budget(tenant: SimulatedTenant, clock: FakeClock) -> None:
    budget = RateBudget(clock=clock)
    tenant.fail_next(503)
    with graph_client(tenant, clock, gate=budget, page_size=300) as graph:
        assert len(graph.alerts_updated_since(LONG_AGO).alerts) == len(tenant.alerts)
    assert budget.usage(Api.GRAPH_ALERTS).used_last_minute == 3 == tenant.calls  # 503, page 1 again, page 2


def test_filter_reaches_graph_and_selects_by_last_update(tenant: SimulatedTenant, client: GraphClient) -> None:
    since = NOW - timedelta(days=2)
    read = client.alerts_updated_since(since)
    assert tenant.request_log[0][1].startswith(
        "/v1.0/security/alerts_v2?$filter=lastUpdateDateTime ge 2026-11-25T12:00:00Z&$top=1000"
    )
    cutoff = since.replace(microsecond=0)
    expected = {a.id for a in map(parse_alert, tenant.alerts) if a.last_update and a.last_update >= cutoff}
    assert {a.id for a in read.alerts} == expected and expected


def test_alerts_created_since_reads_on_before_a_moment(tenant: SimulatedTenant, client: GraphClient) -> None:
    middle = NOW - timedelta(days=10)
    newer = client.alerts_created_since(middle)
    older = client.alerts_created_since(LONG_AGO, before=middle)
    assert {a.id for a in newer.alerts}.isdisjoint({a.id for a in older.alerts})
    assert len(newer.alerts) + len(older.alerts) == len(tenant.alerts)
    assert all(a.created and a.created < middle for a in older.alerts)
    assert "createdDateTime lt 2026-11-17T12:00:00Z" in tenant.request_log[-1][1]


def test_the_page_cap_marks_the_read_incomplete(tenant: SimulatedTenant, clock: FakeClock) -> None:
    with graph_client(tenant, clock, page_size=100, max_pages=2) as graph:
        read = graph.alerts_updated_since(LONG_AGO)
    assert not read.complete
    assert (len(read.alerts), tenant.calls) == (200, 2)


def test_a_read_ending_on_a_full_page_may_have_been_cut(tenant: SimulatedTenant, clock: FakeClock) -> None:
    """Whether Graph stops at $top without a nextLink is undocumented: a full last page is not trusted."""
    with graph_client(tenant, clock, page_size=281) as graph:
        read = graph.alerts_updated_since(LONG_AGO)
    assert (len(read.alerts), tenant.calls, read.complete) == (562, 2, False)


def test_page_size_stays_within_graphs_cap(tenant: SimulatedTenant, clock: FakeClock) -> None:
    for size in (0, 1001):
        with pytest.raises(ValueError, match="page_size"):
            graph_client(tenant, clock, page_size=size)


def test_graph_and_defender_describe_each_alert_alike(client: GraphClient, defender: DefenderClient) -> None:
    """Same tenant, two APIs: the typed alerts agree on everything both APIs carry."""
    graph_alerts = {a.id: a for a in client.alerts_updated_since(LONG_AGO).alerts}
    mde_alerts = {a.id: a for a in defender.list_alerts_updated_since(LONG_AGO)}
    assert graph_alerts.keys() == mde_alerts.keys()

    def shared(alert: Alert) -> tuple[Any, ...]:
        return (
            alert.title,
            alert.description,
            alert.severity,
            alert.status,
            alert.classification,
            alert.determination,
            alert.category,
            alert.created,
            alert.first_event,
            alert.last_event,
            alert.last_update,
            alert.resolved,
            alert.incident_id,
            alert.assigned_to,
            alert.machine_id,
            alert.computer_dns_name,
            alert.rbac_group_name,
            alert.threat_family_name,
            alert.threat_name,
            alert.mitre_techniques,
            str(alert.related_user) if alert.related_user else None,
            alert.comments,
        )

    for alert_id, mde in mde_alerts.items():
        assert shared(graph_alerts[alert_id]) == shared(mde), alert_id
        assert mde.devices == () and mde.machine_ids == (mde.machine_id,)  # Defender's parsing is unchanged


def test_enums_map_onto_the_defender_members_unknown_values_included(
    tenant: SimulatedTenant, client: GraphClient
) -> None:
    machine = tenant.machines[0]["id"]
    plain = tenant.add_alert(machine, severity="UnSpecified", status="Resolved", classification="FalsePositive")
    odd = tenant.add_alert(machine, severity="Critical", status="Dismissed", determination="Apt")
    future = tenant.add_alert(machine, classification="SomethingNew", determination="SomethingElse")
    alerts = {a.id: a for a in client.alerts_updated_since(NOW - timedelta(minutes=1)).alerts}
    assert (alerts[plain["id"]].severity, alerts[plain["id"]].status) == (Severity.UNSPECIFIED, AlertStatus.RESOLVED)
    assert alerts[plain["id"]].classification is not None
    assert alerts[plain["id"]].classification.value == "FalsePositive"
    assert (alerts[odd["id"]].severity, alerts[odd["id"]].status) == (Severity.UNKNOWN, AlertStatus.UNKNOWN)
    assert alerts[odd["id"]].determination == "Apt"
    assert alerts[future["id"]].classification is not None
    assert alerts[future["id"]].classification.value == "Unknown"  # unknownFutureValue
    assert alerts[future["id"]].determination == "Unknown"


def test_an_alert_on_several_devices_is_one_alert_naming_each(tenant: SimulatedTenant, client: GraphClient) -> None:
    alert = tenant.alerts[0]
    others = [m["id"] for m in tenant.machines if m["id"] != alert["machineId"]][:2]
    for other in others:
        tenant.link_device(alert["id"], other)
    read = client.alerts_updated_since(LONG_AGO)
    [parsed] = [a for a in read.alerts if a.id == alert["id"]]
    assert parsed.machine_ids == (alert["machineId"], *others)
    assert parsed.machine_id == alert["machineId"]  # the first device: the alert's own
    linked = next(m for m in tenant.machines if m["id"] == others[0])
    assert parsed.devices[1] == AlertDevice(linked["id"], linked["computerDnsName"], linked["rbacGroupName"])
    lateral = [a for a in read.alerts if a.title == "Possible lateral movement using PsExec"]
    assert lateral and all(len(a.machine_ids) == 2 for a in lateral)
    assert parsed.alert_web_url == f"https://security.microsoft.com/alerts/{alert['id']}?tid={AAD_TENANT_ID}"
    assert parsed.incident_web_url and f"/incidents/{alert['incidentId']}?" in parsed.incident_web_url


def test_evidence_devices_come_with_the_alerts(
    tenant: SimulatedTenant, client: GraphClient, defender: DefenderClient
) -> None:
    read = client.alerts_updated_since(LONG_AGO)
    with_alerts = {m["id"] for m in tenant.machines if any(a["machineId"] == m["id"] for a in tenant.alerts)}
    assert with_alerts <= read.devices.keys()
    device_id = newest_id(tenant, BUSY_HOSTNAME)
    seen, known = read.devices[device_id], defender.get_machine(device_id)
    assert (seen.computer_dns_name, seen.health_status, seen.risk_score, seen.os_platform, seen.os_build) == (
        known.computer_dns_name,
        known.health_status,
        known.risk_score,
        known.os_platform,
        known.os_build,
    )
    assert (seen.rbac_group_id, seen.machine_tags, seen.first_seen) == (
        known.rbac_group_id,
        known.machine_tags,
        known.first_seen,
    )


def test_a_graph_alert_survives_the_shared_cache_codec(client: GraphClient) -> None:
    alerts = client.alerts_updated_since(LONG_AGO).alerts[:20]
    packer = Packer(Alert)
    assert packer.unpack(packer.pack(list(alerts)))[0] == alerts


# -- devices (hunting) -----------------------------------------------------------------------------------------------


def test_device_by_id_is_its_latest_record(
    tenant: SimulatedTenant, client: GraphClient, defender: DefenderClient
) -> None:
    device_id = newest_id(tenant, QUIET_HOSTNAME)  # no alerts: only hunting knows it
    found = client.get_device(device_id.upper())
    known = defender.get_machine(device_id)
    assert found.id == device_id
    assert (found.computer_dns_name, found.os_platform, found.os_version, found.os_build) == (
        known.computer_dns_name,
        known.os_platform,
        known.os_version,
        known.os_build,
    )
    assert (found.health_status, found.rbac_group_name, found.exposure_level, found.machine_tags) == (
        known.health_status,
        known.rbac_group_name,
        known.exposure_level,
        known.machine_tags,
    )
    assert found.last_seen and known.last_seen and abs(found.last_seen - known.last_seen) < timedelta(milliseconds=1)
    method, path = tenant.request_log[-2]
    assert (method, path) == ("POST", "/v1.0/security/runHuntingQuery")


def test_the_query_sent_is_bounded_and_keeps_the_latest_row(client: GraphClient) -> None:
    assert device_query("DeviceId == 'a'", 5) == (
        "DeviceInfo | where DeviceId == 'a' | summarize arg_max(Timestamp, *) by DeviceId"
        " | order by Timestamp desc | take 5"
    )
    assert kql_string("o'brien\\x") == "'o\\'brien\\\\x'"


def test_unknown_or_long_gone_devices_are_not_found(tenant: SimulatedTenant, client: GraphClient) -> None:
    with pytest.raises(DeviceNotFound):
        client.get_device("f" * 40)
    old = min((m for m in tenant.machines if m["computerDnsName"] == DUPLICATE_HOSTNAME), key=lambda m: m["lastSeen"])
    with pytest.raises(DeviceNotFound):
        client.get_device(old["id"])  # last seen 40 days ago: past DeviceInfo's 30 days
    with pytest.raises(InvalidDeviceReference):
        client.get_device("ws-fin-014")
    with pytest.raises(InvalidDeviceReference):
        client.find_devices("x' or 1==1")
    assert tenant.calls == 2


def test_devices_by_name_one_per_id_newest_first(tenant: SimulatedTenant, client: GraphClient) -> None:
    new, old = sorted(
        (m for m in tenant.machines if m["computerDnsName"] == DUPLICATE_HOSTNAME),
        key=lambda m: str(m["lastSeen"]),
        reverse=True,
    )
    assert [m.id for m in client.find_devices(DUPLICATE_HOSTNAME.upper())] == [new["id"]]
    old["lastSeen"] = iso(NOW - timedelta(days=12))  # re-onboarded within the 30 days: both ids show
    found = client.find_devices(DUPLICATE_HOSTNAME)
    assert [m.id for m in found] == [new["id"], old["id"]]
    assert all(m.health_status is HealthStatus.parse(r["healthStatus"]) for m, r in zip(found, (new, old), strict=True))


def test_devices_by_prefix_are_bounded(tenant: SimulatedTenant, client: GraphClient) -> None:
    found = client.find_devices("srv-", prefix=True)
    assert {m.computer_dns_name for m in found} == {
        m["computerDnsName"] for m in tenant.machines if m["computerDnsName"].startswith("srv-")
    }
    assert len({m.id for m in found}) == len(found)
    assert [m.last_seen for m in found] == sorted((m.last_seen for m in found), key=lambda t: t or NOW, reverse=True)
    assert len(client.find_devices("srv-", prefix=True, limit=2)) == 2
    assert sent_queries(client)[-1].endswith("| take 2")
    client.find_devices("srv-", prefix=True, limit=10**6)
    assert sent_queries(client)[-1].endswith("| take 1000")


# -- errors ----------------------------------------------------------------------------------------------------------


def test_a_throttled_api_is_not_called_again_before_retry_after(
    tenant: SimulatedTenant, clock: FakeClock, client: GraphClient
) -> None:
    for _ in range(150):
        client.alerts_updated_since(NOW)
    with pytest.raises(Throttled) as caught:
        client.alerts_updated_since(NOW)
    assert caught.value.retry_after == 60
    sent = tenant.calls
    clock.advance(30)
    with pytest.raises(Throttled):
        client.alerts_updated_since(NOW)  # remembered: not sent
    assert tenant.calls == sent
    assert client.find_devices(QUIET_HOSTNAME)  # hunting is another API: not blocked
    clock.advance(31)
    client.alerts_updated_since(NOW)
    assert tenant.calls == sent + 2


def test_the_default_budget_keeps_under_graphs_limits(tenant: SimulatedTenant, clock: FakeClock) -> None:
    with graph_client(tenant, clock, gate=RateBudget(clock=clock)) as graph:
        for _ in range(45):
            graph.get_device(newest_id(tenant, QUIET_HOSTNAME))
        with pytest.raises(BudgetExhausted):
            graph.get_device(newest_id(tenant, QUIET_HOSTNAME))
        for _ in range(75):  # background work gets half of the 150 a minute
            graph.alerts_updated_since(NOW, priority=Priority.BACKGROUND)
        with pytest.raises(BudgetExhausted):
            graph.alerts_updated_since(NOW, priority=Priority.BACKGROUND)
    assert tenant.calls == 45 + 75  # Graph never had to answer 429


def test_a_missing_permission_is_named(tenant: SimulatedTenant, client: GraphClient) -> None:
    tenant.graph_roles.discard("ThreatHunting.Read.All")
    with pytest.raises(PermissionDenied) as caught:
        client.find_devices(QUIET_HOSTNAME)
    assert caught.value.permission == "ThreatHunting.Read.All"
    assert "ThreatHunting.Read.All" in caught.value.message and "admin consent" in caught.value.message
    assert caught.value.target  # Graph's request-id, for support
    client.alerts_updated_since(NOW)
    tenant.graph_roles.clear()
    with pytest.raises(PermissionDenied) as caught:
        client.alerts_updated_since(NOW)
    assert caught.value.permission == "SecurityAlert.Read.All"
    assert "SecurityAlert.Read.All" in caught.value.message


def test_a_token_for_another_audience_names_the_graph_scope(tenant: SimulatedTenant, clock: FakeClock) -> None:
    tokens = Tokens(jwt("https://api.securitycenter.microsoft.com"))
    high = Cloud.GCC_HIGH.endpoints
    with graph_client(tenant, clock, base=high.graph_base, tokens=tokens) as graph, pytest.raises(AuthError) as caught:
        graph.alerts_updated_since(NOW)
    assert tokens.invalidated == 1 and tenant.calls == 2  # one fresh token, then the answer stands
    assert "https://graph.microsoft.us/.default" in caught.value.hint
    assert "api.securitycenter.microsoft.com" in caught.value.hint
    assert high.graph_scope in str(caught.value)


def test_any_other_401_still_names_the_scope(tenant: SimulatedTenant, client: GraphClient) -> None:
    tenant.fail_next(401, times=2)
    with pytest.raises(AuthError) as caught:
        client.alerts_updated_since(NOW)
    assert "https://graph.simulator.invalid/.default" in caught.value.hint
    tenant.fail_next(401)
    assert client.alerts_updated_since(NOW).complete  # one 401, then a fresh token works


def test_400_is_a_bad_response_with_graphs_message(tenant: SimulatedTenant, client: GraphClient) -> None:
    tenant.fail_next(400, code="BadRequest")
    with pytest.raises(BadResponse, match="Microsoft Graph answered 400 BadRequest: Injected fault"):
        client.alerts_updated_since(NOW)


def test_5xx_is_retried_then_unavailable(tenant: SimulatedTenant, client: GraphClient) -> None:
    tenant.fail_next(503, times=3)
    with pytest.raises(DefenderUnavailable, match=r"Microsoft Graph answered 503 \(gave up after 3 attempts\)"):
        client.find_devices(QUIET_HOSTNAME)


def test_token_audience_reads_only_jwts() -> None:
    assert token_audience(jwt("https://graph.microsoft.com")) == "https://graph.microsoft.com"
    assert token_audience("opaque") is None
    assert token_audience("a.!!!.c") is None


def test_each_cloud_has_its_graph_host_and_scope() -> None:
    hosts = {cloud: (cloud.endpoints.graph_base, cloud.endpoints.graph_scope) for cloud in Cloud}
    assert hosts == {
        Cloud.COMMERCIAL: ("https://graph.microsoft.com", "https://graph.microsoft.com/.default"),
        Cloud.GCC: ("https://graph.microsoft.com", "https://graph.microsoft.com/.default"),
        Cloud.GCC_HIGH: ("https://graph.microsoft.us", "https://graph.microsoft.us/.default"),
        Cloud.DOD: ("https://dod-graph.microsoft.us", "https://dod-graph.microsoft.us/.default"),
    }
