"""A 100,000-device simulated tenant and Defender's real paging, errors, hourly limit and ingestion lag, driven
through the bot's own clients (`DefenderClient`, the Graph alert mirror, the alert service)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot.alerts.devices import MAX_SUGGESTIONS
from bot.alerts.service import AlertService
from bot.defender.auth import StaticTokenProvider
from bot.defender.client import PREFIX_MATCHES, DefenderClient
from bot.defender.errors import BadResponse, DeviceNotFound, Throttled
from bot.defender.simulator import (
    GRAPH_SIMULATOR_BASE_URL,
    QUIET_HOSTNAME,
    SIMULATOR_BASE_URL,
    SimulatedTenant,
    SimulatorTransport,
)
from bot.defender.simulator.fleet import FleetSpec
from bot.demo.clock import FakeClock
from tests.doubles.defender import graph_source

NOW = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)
LIVE_AND_STALE = "ws-000000.corp.contoso.com"  # device 0 of the ws family: re-onboarded, alerts on both records
# The MDE API's determinations (alerts.md), and the two it deprecated in 2022 that old alerts may still carry.
MDE_DETERMINATIONS = {
    "MultiStagedAttack", "MaliciousUserActivity", "CompromisedUser", "Malware", "Phishing", "UnwantedSoftware",
    "Other", "SecurityTesting", "LineOfBusinessApplication", "ConfirmedUserActivity", "Clean", "InsufficientData",
    "NotAvailable", "Apt", "SecurityPersonnel",
}  # fmt: skip


class CountingTransport(httpx.BaseTransport):
    """The simulator's transport, also counting the records each answer carried (what crossed the wire)."""

    def __init__(self, tenant: SimulatedTenant) -> None:
        self.inner = SimulatorTransport(tenant)
        self.answers: list[tuple[httpx.URL, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        body = json.loads(response.read() or b"null")
        records = body.get("value") if isinstance(body, dict) else None
        self.answers.append((request.url, len(records) if isinstance(records, list) else 1))
        return response


@pytest.fixture(scope="module")
def big() -> SimulatedTenant:
    """One 100,000-device tenant for the module (it takes about a second to build); tests only read it."""
    return SimulatedTenant(now=lambda: NOW, calls_per_minute=10**6, calls_per_hour=10**6, fleet=FleetSpec(100_000))


@pytest.fixture
def http(big: SimulatedTenant) -> Iterator[httpx.Client]:
    headers = {"Authorization": "Bearer t"}
    with httpx.Client(transport=SimulatorTransport(big), base_url=SIMULATOR_BASE_URL, headers=headers) as client:
        yield client


def defender(tenant: SimulatedTenant, transport: httpx.BaseTransport | None = None, **options: Any) -> DefenderClient:
    return DefenderClient(
        SIMULATOR_BASE_URL,
        StaticTokenProvider("simulator"),
        transport=transport or SimulatorTransport(tenant),
        **options,
    )


def seen(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(record["lastSeen"]).replace("Z", "+00:00")[:26] + "+00:00")


# -- the fleet -------------------------------------------------------------------------------------------------------


def test_fleet_has_re_onboarded_devices_whose_stale_record_comes_first(
    big: SimulatedTenant, http: httpx.Client
) -> None:
    assert len(big.fleet) == 100_000 + 100_000 // 20
    assert big.machines == SimulatedTenant(now=lambda: NOW).machines  # the built-in devices are the same
    stale, live = http.get("/api/machines", params={"$filter": f"computerDnsName eq '{LIVE_AND_STALE}'"}).json()[
        "value"
    ]
    assert stale["id"] != live["id"]
    assert all(re.fullmatch(r"[0-9a-f]{40}", record["id"]) for record in (stale, live))
    assert seen(stale) < seen(live) - timedelta(days=6)
    assert stale["healthStatus"] in {"Inactive", "NoSensorData"}
    for record in (stale, live):
        assert http.get(f"/api/machines/{record['id']}").json()["computerDnsName"] == LIVE_AND_STALE
        assert any(a["machineId"] == record["id"] for a in big.alerts)
    single = http.get("/api/machines", params={"$filter": "computerDnsName eq 'WS-000001.corp.contoso.com'"})
    assert len(single.json()["value"]) == 1
    # Defender's GET /api/machines/{name} returns one of the records, which one is undocumented: here the stale one.
    assert http.get(f"/api/machines/{LIVE_AND_STALE}").json()["id"] == stale["id"]
    altered = live["id"][:39] + ("1" if live["id"].endswith("0") else "0")
    assert http.get(f"/api/machines/{altered}").status_code == 404


def test_machines_page_by_10000_with_skip_and_keep_the_filter(http: httpx.Client) -> None:
    query = {"$filter": "startswith(computerDnsName,'lt-')"}
    url: str | None = "/api/machines"
    pages: list[list[dict[str, Any]]] = []
    while url is not None:
        body = http.get(url, params=query if not pages else None).json()
        pages.append(body["value"])
        url = body.get("@odata.nextLink")
        if url is not None:
            link = httpx.URL(url)
            assert dict(link.params) == {**query, "$skip": str(10_000 * len(pages))}
    # 25,000 fleet laptops, 1,250 of them re-onboarded, and the 6 built-in lt- records.
    assert [len(page) for page in pages] == [10_000, 10_000, 6_256]
    assert len({record["id"] for page in pages for record in page}) == 26_256


def test_top_answers_once_without_a_next_link(http: httpx.Client) -> None:
    for top in (25, 10_000):
        body = http.get("/api/machines", params={"$filter": "startswith(computerDnsName,'ws')", "$top": str(top)})
        assert len(body.json()["value"]) == top
        assert "@odata.nextLink" not in body.json()  # 65,000 more match: Defender does not say so


def test_the_client_reads_more_than_10000_alerts_page_by_page() -> None:
    tenant = SimulatedTenant(now=lambda: NOW)
    quiet = next(m for m in tenant.machines if m["computerDnsName"] == QUIET_HOSTNAME)
    template = tenant.alerts[0]
    tenant.alerts.extend({**template, "id": f"da{n:018d}_1", "machineId": quiet["id"]} for n in range(12_345))
    counting = CountingTransport(tenant)
    with defender(tenant, counting) as client:
        alerts = client.get_device_alerts(quiet["id"])
    assert len({a.id for a in alerts}) == 12_345
    assert [(url.params.get("$skip"), records) for url, records in counting.answers] == [
        (None, 10_000),
        ("10000", 2_345),
    ]


def test_an_odata_error_reaches_the_client_with_its_tracking_id(big: SimulatedTenant) -> None:
    quiet = next(m for m in big.machines if m["computerDnsName"] == QUIET_HOSTNAME)
    with defender(big) as client, pytest.raises(BadResponse) as refused:
        client.get_device_alerts(quiet["id"], "title eq 'x'")
    assert "400 ODataError" in str(refused.value)
    assert refused.value.target is not None
    assert uuid.UUID(refused.value.target).version == 4


def test_simulated_determinations_are_the_mde_apis_own(big: SimulatedTenant) -> None:
    determinations = {a["determination"] for a in big.alerts} - {None}
    assert determinations <= MDE_DETERMINATIONS
    assert {"Clean", "InsufficientData"} <= determinations


# -- throttling ------------------------------------------------------------------------------------------------------


def test_the_1501st_call_in_an_hour_is_throttled_until_the_first_leaves_the_window() -> None:
    clock = FakeClock()
    tenant = SimulatedTenant(now=lambda: NOW, clock=clock)
    quiet = next(m for m in tenant.machines if m["computerDnsName"] == QUIET_HOSTNAME)
    started = clock.now
    with defender(tenant, clock=clock, sleep=clock.sleep) as client:
        for _ in range(1_500):  # 60 a minute: within the minute's limit all along
            assert client.get_device_alerts(quiet["id"]) == []
            clock.now += 1.0
        calls = tenant.calls
        with pytest.raises(Throttled) as throttled:
            client.get_device_alerts(quiet["id"])
        assert throttled.value.retry_after == 3_600 - 1_500  # the first call leaves the hour at started + 3600
        assert tenant.calls == calls + 1
        with pytest.raises(Throttled):
            client.get_device_alerts(quiet["id"])
        assert tenant.calls == calls + 1  # the client waits the 429 out without asking again
        assert client.get_machine(quiet["id"]).id == quiet["id"]  # another API, another counter
        clock.now = started + 3_600
        assert client.get_device_alerts(quiet["id"]) == []


def test_the_hourly_429_has_defenders_body() -> None:
    clock = FakeClock()
    tenant = SimulatedTenant(now=lambda: NOW, clock=clock, calls_per_hour=3)
    headers = {"Authorization": "Bearer t"}
    with httpx.Client(transport=SimulatorTransport(tenant), base_url=SIMULATOR_BASE_URL, headers=headers) as http:
        for _ in range(3):
            assert http.get("/api/alerts", params={"$top": "1"}).status_code == 200
            clock.now += 70  # a new minute each time
        throttled = http.get("/api/alerts", params={"$top": "1"})
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == str(3_600 - 210)
    error = throttled.json()["error"]
    assert error["code"] == "TooManyRequests"
    assert uuid.UUID(error["target"]).version == 4


# -- lookups in a large tenant ---------------------------------------------------------------------------------------


def test_a_short_name_matching_65000_devices_costs_one_small_call(big: SimulatedTenant) -> None:
    counting = CountingTransport(big)
    with defender(big, counting) as client:
        service = AlertService(client)
        with pytest.raises(DeviceNotFound) as missing:
            service.device_alerts("ws")
    assert len(missing.value.suggestions) == MAX_SUGGESTIONS
    assert all(name.startswith("ws") for name in missing.value.suggestions)
    exact, prefix = counting.answers  # the exact name first (none), then one bounded prefix search
    assert (exact[0].params["$filter"], exact[1]) == ("computerDnsName eq 'ws'", 0)
    assert dict(prefix[0].params) == {"$filter": "startswith(computerDnsName,'ws')", "$top": str(PREFIX_MATCHES)}
    assert prefix[1] == PREFIX_MATCHES


def test_a_full_hostname_with_a_stale_record_shows_the_live_devices_alerts(big: SimulatedTenant) -> None:
    records = [m for m in big.directory.hunted("DeviceName", "=~", LIVE_AND_STALE)]
    live = max(records, key=seen)
    with defender(big) as client:
        found = AlertService(client).device_alerts(LIVE_AND_STALE)
    assert found.machine_id == live["id"]
    assert found.machine is not None
    assert found.machine.health_status is not None
    assert found.machine.health_status.value == live["healthStatus"]
    assert {a.id for a in found.alerts} == {a["id"] for a in big.alerts if a["machineId"] == live["id"]}


def test_graph_resolves_a_full_hostname_to_the_live_record_too(big: SimulatedTenant) -> None:
    live = max(big.directory.hunted("DeviceName", "=~", LIVE_AND_STALE), key=seen)
    source = graph_source(big, now=lambda: NOW)
    try:
        found = AlertService(source).device_alerts(LIVE_AND_STALE)
    finally:
        source.close()
    assert found.machine_id == live["id"]
    assert {a.id for a in found.alerts} == {a["id"] for a in big.alerts if a["machineId"] == live["id"]}


# -- ingestion lag ---------------------------------------------------------------------------------------------------


def test_an_update_shows_only_after_the_ingestion_lag() -> None:
    wall = [NOW]
    tenant = SimulatedTenant(now=lambda: wall[0], ingestion_lag=300)
    quiet = next(m for m in tenant.machines if m["computerDnsName"] == QUIET_HOSTNAME)
    headers = {"Authorization": "Bearer t"}
    with httpx.Client(transport=SimulatorTransport(tenant), base_url=SIMULATOR_BASE_URL, headers=headers) as http:

        def listed(path: str, **params: str) -> dict[str, dict[str, Any]]:
            return {a["id"]: a for a in http.get(path, params=params).json()["value"]}

        added = tenant.add_alert(quiet["id"], title="Fresh")
        old = next(a for a in tenant.alerts if a["status"] == "New" and a["machineId"] != quiet["id"])
        tenant.set_alert_status(old["id"], "Resolved")
        since = {"$filter": f"lastUpdateTime ge {NOW - timedelta(minutes=1):%Y-%m-%dT%H:%M:%S}Z"}
        assert added["id"] not in listed(f"/api/machines/{quiet['id']}/alerts")
        assert listed("/api/alerts", **since) == {}  # a poll now: neither change is there yet
        assert listed(f"/api/machines/{old['machineId']}/alerts")[old["id"]]["status"] == "New"
        assert added["id"] not in listed(f"{GRAPH_SIMULATOR_BASE_URL}/v1.0/security/alerts_v2")
        wall[0] = NOW + timedelta(seconds=299)
        assert listed("/api/alerts", **since) == {}
        wall[0] = NOW + timedelta(seconds=300)
        polled = listed("/api/alerts", **since)
        assert set(polled) == {added["id"], old["id"]}
        assert polled[old["id"]]["status"] == "Resolved"
