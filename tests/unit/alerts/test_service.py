"""The alert service end to end through the real client, against the simulator or a counting transport.

Each test runs against both APIs (`defender_api`): the Defender for Endpoint client, and the Graph alert mirror
over the Graph client (alerts from one tenant-wide read, devices from advanced hunting).
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest

from bench.service_calls import (
    CountingDefender,
    concurrent_same_device,
    filter_variants,
    max_in_window,
    minutes_with_fresh_data,
    run_storm,
)
from bot.alerts.misses import MISS_TTL
from bot.alerts.query import AlertFilters
from bot.alerts.result import DeviceAlerts
from bot.alerts.scope import EVERY_DEVICE, DeviceScope
from bot.alerts.service import AlertService
from bot.alerts.source import AlertSource
from bot.defender.auth import StaticTokenProvider
from bot.defender.client import DefenderClient
from bot.defender.errors import DefenderUnavailable, DeviceNotFound, PermissionDenied, Throttled
from bot.defender.limits import Api, ApiLimits, BudgetExhausted, Priority
from bot.defender.models import Alert, AlertStatus, Machine, Severity
from bot.defender.simulator import (
    BUSY_HOSTNAME,
    DUPLICATE_HOSTNAME,
    QUIET_HOSTNAME,
    SIMULATOR_BASE_URL,
    SimulatedTenant,
    SimulatorTransport,
)
from bot.demo.clock import FakeClock
from bot.state.budget import RateBudget
from bot.telemetry.metrics import DEFENDER_REQUESTS
from tests.doubles.concurrency import run_concurrently
from tests.doubles.defender import graph_source, kind_of, machine_id, nth_machine_id, shown_alerts

FIN = "ws-fin-014.contoso.local"


class World:
    """A service wired to the simulator with one fake clock for everything, through `api` (`DEFENDER_API`)."""

    def __init__(self, *, latency: float = 0.0, ttl: float = 60.0, per_minute: int = 100, api: str = "mde") -> None:
        self.api = api
        self.clock = FakeClock()
        self.tenant = SimulatedTenant(now=self.clock.wall, clock=self.clock, latency=latency)
        # `per_minute` holds for the Graph APIs too (their own limits are higher than the MDE ones).
        graph = {api: ApiLimits(per_minute, 1500) for api in (Api.GRAPH_ALERTS, Api.GRAPH_HUNTING)}
        self.budget = RateBudget(per_minute, 1500, per_api=graph, clock=self.clock)
        self.client: AlertSource
        if api == "graph":
            self.client = graph_source(self.tenant, gate=self.budget, clock=self.clock, now=self.clock.wall)
        else:
            self.client = DefenderClient(
                SIMULATOR_BASE_URL,
                StaticTokenProvider("t"),
                gate=self.budget,
                transport=SimulatorTransport(self.tenant),
                clock=self.clock,
                sleep=self.clock.sleep,
            )
        self.service = AlertService(self.client, ttl=ttl, max_stale=900, clock=self.clock, now=self.clock.wall)

    @property
    def graph(self) -> bool:
        return self.api == "graph"

    def machine_id(self, hostname: str) -> str:
        return next(m["id"] for m in self.tenant.machines if m["computerDnsName"] == hostname)

    def shown(self, machine_id: str) -> list[dict[str, Any]]:
        """The device's alerts as this API shows them (Graph: every alert whose evidence names it)."""
        return shown_alerts(self.tenant, machine_id, self.api)

    def detail_calls(self, through_mde: int) -> int:
        """Device-detail requests expected for devices with alerts: none through Graph (their evidence names them)."""
        return 0 if self.api == "graph" else through_mde

    def calls(self, kind: str) -> int:
        """Requests the simulator received of one kind: 'alerts' (a device's alerts; alerts_v2 through Graph),
        'machine' and 'machines' (device details and name searches; advanced hunting through Graph, counted
        as 'machine')."""
        counts = Counter(_kind(path) for _, path in self.tenant.request_log)
        return counts[kind]


def _kind(path: str) -> str:
    kind = kind_of(path)
    if kind in ("machine-alerts", "graph-alerts"):
        return "alerts"
    return {"graph-hunting": "machine", "alerts": "other"}.get(kind, kind)


@pytest.fixture
def world(defender_api: str) -> World:
    return World(api=defender_api)


def test_lookup_by_id_returns_the_devices_alerts_and_details(world: World) -> None:
    mid = world.machine_id(FIN)
    result = world.service.device_alerts(mid)
    expected = world.shown(mid)
    assert result.total == len(expected) > 0
    assert {a.id for a in result.alerts} == {a["id"] for a in expected}
    assert result.machine is not None and result.machine.computer_dns_name == FIN
    assert result.display_name == FIN
    assert not result.from_cache and not result.stale
    # Through Graph the details come from the alerts' evidence: no advanced hunting for this device.
    assert (world.calls("alerts"), world.calls("machine")) == (1, world.detail_calls(1))


def test_alerts_come_in_display_order(world: World) -> None:
    alerts = world.service.device_alerts(world.machine_id(BUSY_HOSTNAME)).alerts
    keys = [(not a.is_open, -a.severity.rank) for a in alerts]
    assert keys == sorted(keys)
    assert alerts[0].is_open and alerts[-1].status is AlertStatus.RESOLVED


def test_filters_are_served_from_one_cached_call(world: World) -> None:
    mid = world.machine_id(BUSY_HOSTNAME)
    variants = [
        AlertFilters(),
        AlertFilters(severities=frozenset({Severity.HIGH})),
        AlertFilters(statuses=frozenset({AlertStatus.NEW, AlertStatus.IN_PROGRESS})),
        AlertFilters(since=timedelta(days=7)),
        AlertFilters(frozenset({Severity.MEDIUM}), frozenset({AlertStatus.RESOLVED}), timedelta(hours=24)),
    ]
    results = [world.service.device_alerts(mid, f) for f in variants]
    pages = world.calls("alerts")
    # 500 alerts arrive in one page (Defender's hold 10,000; Graph: the tenant's ~600); variants cost nothing
    assert pages == 1
    assert [r.from_cache for r in results] == [False, True, True, True, True]
    total = len(world.shown(mid))  # Graph: 500 and the lateral-movement alerts that came from this device
    assert results[0].total == total == len(results[0].alerts) >= 500
    assert all(a.severity is Severity.HIGH for a in results[1].alerts) and results[1].alerts
    assert all(a.is_open for a in results[2].alerts)
    assert all(r.total == total for r in results)
    assert len(results[3].alerts) < total


def test_concurrent_requests_for_one_device_share_one_call(defender_api: str) -> None:
    world = World(latency=0.3, api=defender_api)
    mid = world.machine_id(FIN)
    results = run_concurrently(20, lambda: world.service.device_alerts(mid))
    assert all(isinstance(r, DeviceAlerts) for r in results)
    assert len({tuple(a.id for a in r.alerts) for r in results if isinstance(r, DeviceAlerts)}) == 1
    assert world.calls("alerts") == 1
    assert world.calls("machine") == world.detail_calls(1)


def test_concurrent_waiters_share_the_leaders_error(defender_api: str) -> None:
    world = World(latency=0.3, api=defender_api)
    unknown = nth_machine_id(12345)
    outcomes = run_concurrently(10, lambda: world.service.device_alerts(unknown))
    assert all(isinstance(o, DeviceNotFound) for o in outcomes)
    assert len(outcomes) == 10
    assert world.calls("alerts") == 1


def test_cache_expires_after_the_ttl(world: World) -> None:
    mid = world.machine_id(FIN)
    world.service.device_alerts(mid)
    world.clock.advance(59)
    assert world.service.device_alerts(mid).from_cache
    assert world.service.device_alerts(mid).age == timedelta(seconds=59)
    world.clock.advance(2)
    assert not world.service.device_alerts(mid).from_cache
    assert world.calls("alerts") == 2
    assert world.calls("machine") == world.detail_calls(1)  # details live for an hour


def test_new_alerts_appear_after_the_ttl(world: World) -> None:
    mid = world.machine_id(QUIET_HOSTNAME)
    assert world.service.device_alerts(mid).total == 0
    world.tenant.add_alert(mid, title="Fresh alert", severity="High", status="New")
    assert world.service.device_alerts(mid).total == 0  # still cached
    world.clock.advance(61)
    result = world.service.device_alerts(mid)
    assert [a.title for a in result.alerts] == ["Fresh alert"]


@pytest.mark.parametrize(
    ("status", "retry_after", "reason"),
    [(500, None, "Defender unavailable"), (429, 120, "Defender throttled")],
)
def test_stale_data_is_served_when_defender_fails(
    world: World, status: int, retry_after: int | None, reason: str
) -> None:
    mid = world.machine_id(FIN)
    fresh = world.service.device_alerts(mid)
    world.clock.advance(300)
    world.tenant.fail_next(status, times=3, retry_after=retry_after)
    stale = world.service.device_alerts(mid)
    assert stale.stale and stale.stale_reason == reason
    assert stale.age >= timedelta(seconds=300)  # plus the backoff the client slept on the fake clock
    assert [a.id for a in stale.alerts] == [a.id for a in fresh.alerts]


def test_no_stale_data_past_its_maximum_age(world: World) -> None:
    mid = world.machine_id(FIN)
    world.service.device_alerts(mid)
    world.clock.advance(901)
    world.tenant.fail_next(500, times=3)
    with pytest.raises(DefenderUnavailable):
        world.service.device_alerts(mid)


def test_errors_without_any_cached_data_reach_the_caller(world: World) -> None:
    world.tenant.fail_next(429, retry_after=30, times=2)  # the details call, then the alerts call
    with pytest.raises(Throttled) as caught:
        world.service.device_alerts(world.machine_id(FIN))
    assert caught.value.retry_after == 30


def test_budget_exhausted_without_cache_raises_and_with_cache_is_stale(defender_api: str) -> None:
    world = World(per_minute=1, api=defender_api)
    first, other = world.machine_id(FIN), world.machine_id(QUIET_HOSTNAME)
    world.service.device_alerts(first)
    world.clock.advance(61)  # cache expired, but the minute window also slid
    world.service.device_alerts(other)  # spends this minute's one call
    world.clock.advance(6)  # past the Graph mirror's 5 s between reads: `first` needs a call of its own
    result = world.service.device_alerts(first)
    assert result.stale_reason == "call budget used up"
    with pytest.raises(BudgetExhausted):
        world.service.device_alerts(world.machine_id(BUSY_HOSTNAME))


def test_refresh_bypasses_the_cache_but_not_a_burst_of_presses(world: World) -> None:
    mid = world.machine_id(FIN)
    world.service.device_alerts(mid)
    world.clock.advance(2)
    assert world.service.device_alerts(mid, refresh=True).from_cache  # pressed within 5 s: reuse
    world.clock.advance(4)
    assert not world.service.device_alerts(mid, refresh=True).from_cache
    assert world.calls("alerts") == 2


def test_short_hostnames_resolve_once_an_hour(world: World) -> None:
    result = world.service.device_alerts("ws-fin-014")
    assert result.machine_id == world.machine_id(FIN)
    machine_calls = world.calls("machine") + world.calls("machines")
    world.clock.advance(120)
    world.service.device_alerts("WS-FIN-014")
    world.service.device_alerts(FIN)
    assert world.calls("machine") + world.calls("machines") == machine_calls
    world.clock.advance(3601)
    world.service.device_alerts("ws-fin-014")
    assert world.calls("machine") + world.calls("machines") > machine_calls


def test_duplicate_hostname_resolves_to_the_newest_record(world: World) -> None:
    records = [m for m in world.tenant.machines if m["computerDnsName"] == DUPLICATE_HOSTNAME]
    assert len(records) == 2
    newest = max(records, key=lambda m: m["lastSeen"])
    assert world.service.device_alerts(DUPLICATE_HOSTNAME).machine_id == newest["id"]
    assert World(api=world.api).service.device_alerts(DUPLICATE_HOSTNAME.split(".")[0]).machine_id == newest["id"]


def test_ambiguous_and_unknown_names_are_not_found(world: World) -> None:
    with pytest.raises(DeviceNotFound) as ambiguous:
        world.service.device_alerts("ws-fin")
    assert FIN in ambiguous.value.suggestions
    assert all(s.startswith("ws-fin") for s in ambiguous.value.suggestions)
    with pytest.raises(DeviceNotFound) as unknown:
        world.service.device_alerts("no-such-device")
    assert unknown.value.suggestions == ()
    # Through Graph the first lookup of anything reads the tenant's alerts once (the mirror's backfill).
    assert world.calls("alerts") == (1 if world.api == "graph" else 0)


def _machine_forbidden(inner: SimulatorTransport) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/machines" or (path.startswith("/api/machines/") and not path.endswith("/alerts")):
            body = {"error": {"code": "Forbidden", "message": "required roles: Machine.Read.All"}}
            return httpx.Response(403, json=body)
        return inner.handle_request(request)

    return handler


@pytest.mark.defender_api("mde", reason="a transport refusing MDE's machine API; Graph's: the test after this one")
def test_missing_machine_permission_still_shows_alerts_and_is_not_asked_again() -> None:
    world = World()
    forbidden = httpx.MockTransport(_machine_forbidden(SimulatorTransport(world.tenant)))
    calls = Counter[str]()

    def counting(request: httpx.Request) -> httpx.Response:
        calls[_kind(request.url.path)] += 1
        return forbidden.handle_request(request)

    client = DefenderClient(SIMULATOR_BASE_URL, StaticTokenProvider("t"), transport=httpx.MockTransport(counting))
    service = AlertService(client, clock=world.clock, now=world.clock.wall)
    mid = world.machine_id(FIN)
    result = service.device_alerts(mid)
    assert result.machine is None and result.total > 0
    assert result.display_name == FIN  # taken from the alerts
    world.clock.advance(120)
    service.device_alerts(mid)
    assert calls["machine"] == 1 and calls["alerts"] == 2
    with pytest.raises(PermissionDenied):
        service.device_alerts("ws-fin-014")  # a hostname needs Machine.Read.All


@pytest.mark.defender_api("graph", reason="Graph's counterpart of the test above: ThreatHunting.Read.All is missing")
def test_missing_hunting_permission_still_shows_alerts_and_is_not_asked_again(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.tenant.graph_roles.discard("ThreatHunting.Read.All")
    fin = world.machine_id(FIN)
    assert world.service.device_alerts(fin).display_name == FIN  # named by its alerts' evidence: no hunting
    quiet = world.machine_id(QUIET_HOSTNAME)  # no alert names it: only advanced hunting could
    result = world.service.device_alerts(quiet)
    assert result.machine is None and result.total == 0
    assert "grant ThreatHunting.Read.All" in caplog.text  # the permission Graph needs, not MDE's Machine.Read.All
    world.clock.advance(120)
    world.service.device_alerts(quiet)
    assert world.calls("machine") == 1  # not asked again
    with pytest.raises(PermissionDenied):
        world.service.device_alerts(QUIET_HOSTNAME)  # a hostname the mirror does not know needs advanced hunting


def test_a_device_known_by_its_alerts_only_is_shown_and_an_unknown_id_is_not_found(world: World) -> None:
    """The stale record of the re-onboarded laptop was last seen 40 days ago: Defender's API still has it;
    Graph's advanced hunting (30 days) does not, but its alerts name it. An id nobody knows is not found."""
    records = [m for m in world.tenant.machines if m["computerDnsName"] == DUPLICATE_HOSTNAME]
    stale = min(records, key=lambda m: m["lastSeen"])["id"]
    result = world.service.device_alerts(stale)
    assert result.total == len(world.shown(stale)) > 0
    assert result.display_name == DUPLICATE_HOSTNAME
    with pytest.raises(DeviceNotFound):
        world.service.device_alerts(nth_machine_id(4242))


@pytest.mark.defender_api("mde", reason="bench.service_calls drives the MDE client; Graph: the storm test below")
@pytest.mark.parametrize(("per_minute", "per_hour"), [(100, 1500), (100, 400), (20, 1500)])
def test_an_hour_of_bursty_lookups_never_breaks_the_budget(per_minute: int, per_hour: int) -> None:
    report = run_storm(per_minute, per_hour, lookups=1000, devices=300)
    assert sum(report.outcomes.values()) == 1000
    assert report.busiest_minute <= per_minute
    assert len(report.alert_calls) <= per_hour
    assert report.outcomes["fresh"] == len(report.alert_calls)
    # The storm is more than the budget allows: some people got stale data or a budget message.
    assert report.outcomes["budget message"] + report.outcomes["stale"] > 0


@pytest.mark.defender_api("mde", reason="bench.service_calls drives the MDE client; Graph: the storm test below")
def test_a_paced_hour_long_storm_keeps_fresh_data_coming_and_never_refuses_a_cached_device() -> None:
    """3,000 lookups over 500 devices, evenly over the hour: twice what 1,500 calls an hour can refresh every 60 s."""
    paced = run_storm(lookups=3000, devices=500, storm_share=0.0)
    assert paced.busiest_minute <= 100
    assert max_in_window(paced.alert_calls, 3600) <= 1500
    assert not paced.refused_calls
    assert [cached for _, cached in paced.notices if cached] == []  # nobody with a cached copy got a budget notice
    assert minutes_with_fresh_data(paced) == 60
    assert max(age for _, age in paced.shown) > 60  # the older copies shown carry their age
    # The same hour with a fixed TTL spends the budget by the half hour, then refuses people with cached devices.
    fixed = run_storm(lookups=3000, devices=500, storm_share=0.0, paced=False)
    assert any(cached for _, cached in fixed.notices)
    assert minutes_with_fresh_data(fixed) < 60


@pytest.mark.defender_api("mde", reason="bench.service_calls drives the MDE client (Graph: the tests above)")
def test_one_call_serves_a_crowd_and_every_filter_variant() -> None:
    assert concurrent_same_device(threads=20, latency=0.2) == 1
    assert filter_variants() == (5, 1)


@pytest.mark.defender_api("graph", reason="MDE's storm is bench.service_calls, in the test above")
def test_a_storm_of_lookups_costs_graph_reads_by_time_not_by_device(world: World) -> None:
    """Every device of the tenant at once, then a lookup every half second for five minutes: alerts_v2 is read
    at most once per 5 s (the mirror's delta), whatever the number of devices; hunting once per device at most."""
    devices = sorted({str(m["id"]) for m in world.tenant.machines})
    for mid in devices:
        world.service.device_alerts(mid)
    assert world.calls("alerts") == 1  # one read of the tenant's alerts serves the whole burst
    assert world.calls("machine") < len(devices)  # details of devices with alerts come from their evidence
    rng = random.Random(7)
    for _ in range(600):
        world.clock.advance(0.5)
        world.service.device_alerts(rng.choice(devices))
    assert world.calls("alerts") <= 1 + 300 / 5
    assert world.calls("machine") <= len(devices)  # device details are kept for an hour


@pytest.mark.defender_api("mde", reason="a per-device alerts double: Graph reads per sync (the storm test above)")
def test_background_polling_never_takes_the_interactive_reserve() -> None:
    clock = FakeClock()
    defender = CountingDefender(clock)
    budget = RateBudget(100, 1500, clock=clock)
    client = DefenderClient(
        "https://api.test", StaticTokenProvider("t"), gate=budget, transport=httpx.MockTransport(defender), clock=clock
    )
    service = AlertService(client, ttl=0, clock=clock, now=clock.wall)
    devices = [nth_machine_id(n) for n in range(200)]
    background = sum(_tries(lambda d: service.device_alerts(d, priority=Priority.BACKGROUND), devices))
    interactive = sum(_tries(lambda d: service.device_alerts(d, priority=Priority.INTERACTIVE), devices))
    assert background == 50
    assert interactive == 50
    assert budget.usage(Api.MACHINE_ALERTS).used_last_minute == 100


def _tries(call: Callable[[str], object], devices: list[str]) -> list[int]:
    made = []
    for device in devices:
        try:
            call(device)
            made.append(1)
        except BudgetExhausted:
            made.append(0)
    return made


# Device-group scope -------------------------------------------------------------------------------------------

WORKSTATIONS = DeviceScope(frozenset({"workstations"}))


def test_a_scoped_lookup_sees_devices_in_its_groups_only(world: World) -> None:
    assert world.service.device_alerts("ws-fin-014", scope=WORKSTATIONS).display_name == FIN
    for ref in ("srv-dc-01", world.machine_id("srv-sql-02.contoso.local")):
        with pytest.raises(DeviceNotFound) as caught:
            world.service.device_alerts(ref, scope=WORKSTATIONS)
        assert (caught.value.reference, caught.value.suggestions) == (ref, ())
    # An out-of-scope device's alerts are never shown. A name is checked before its alerts are asked for; an id's
    # alerts are asked for beside its details (one round trip) and dropped.
    assert world.calls("alerts") == (1 if world.api == "graph" else 2)


def test_a_scoped_lookup_cannot_be_answered_without_device_details(world: World) -> None:
    """Transient failures say so (not "not found"); a missing Machine.Read.All says which permission is needed."""
    mid = world.machine_id(FIN)
    # What the scope check reads fails: the details on MDE (not the alerts asked for beside them: the two calls go
    # out together, in any order), the mirror's alerts through Graph (their evidence names the device's group).
    hunting = "/v1.0/security/runHuntingQuery"
    world.tenant.fail_next(
        500, times=3, path=f"/api/machines/{mid}" if world.api == "mde" else "/v1.0/security/alerts_v2"
    )
    with pytest.raises(DefenderUnavailable):
        world.service.device_alerts(mid, scope=WORKSTATIONS)
    assert world.service.device_alerts(mid, scope=WORKSTATIONS).display_name == FIN  # a failure is not remembered
    other = world.machine_id(QUIET_HOSTNAME)  # without alerts: Graph's mirror does not know it either
    world.tenant.fail_next(403, path=f"/api/machines/{other}" if world.api == "mde" else hunting)
    with pytest.raises(PermissionDenied, match="cannot check device groups"):
        world.service.device_alerts(other, scope=WORKSTATIONS)


def test_device_group_comes_from_the_details_cache(world: World) -> None:
    mid = world.machine_id("srv-dc-01.contoso.local")
    assert world.service.device_group(mid) == "Servers"
    assert world.service.device_group(mid) == "Servers"
    assert world.calls("machine") == world.detail_calls(1)


# No existence oracle: a scoped lookup costs the same for a hidden device and a missing one -----------------------
ROUNDS = 20

OUTSIDE_NAMES = ["srv-dc-01.contoso.local", "srv-sql-02", "lt-hr-031.contoso.local", "mac-design-07", "srv-build-07"]
OUTSIDE_HOSTS = ["srv-dc-01.contoso.local", "srv-sql-02.contoso.local", "lt-hr-031.contoso.local", "mac-design-07"]


def _sample(world: World, refs: Callable[[int], str]) -> tuple[list[int], list[int]]:
    """Per round, on a service with empty caches: the Defender calls of the first lookup and of a repeat."""
    first_calls: list[int] = []
    again_calls: list[int] = []
    for n in range(ROUNDS):
        service = AlertService(world.client, clock=world.clock, now=world.clock.wall)
        for calls in (first_calls, again_calls):
            before = len(world.tenant.request_log)
            with pytest.raises(DeviceNotFound) as caught:
                service.device_alerts(refs(n), scope=WORKSTATIONS)
            calls.append(len(world.tenant.request_log) - before)
            assert caught.value.suggestions == ()
    return first_calls, again_calls


def test_out_of_scope_and_nonexistent_devices_cost_the_same_calls() -> None:
    """Time follows the calls (every Defender call is one round trip), so equal calls mean equal time."""
    world = World(per_minute=100_000)
    outside_ids = [world.machine_id(host) for host in OUTSIDE_HOSTS]
    samples = {
        "outside name": _sample(world, lambda n: OUTSIDE_NAMES[n % len(OUTSIDE_NAMES)]),
        "unknown name": _sample(world, lambda n: f"ws-nope-{n:03}"),
        "outside id": _sample(world, lambda n: outside_ids[n % len(outside_ids)]),
        "unknown id": _sample(world, lambda n: nth_machine_id(10_000 + n)),
    }
    # Exact call counts: a name costs two calls the first time (exact name, then the prefix search), an id two
    # at once (details and alerts, dropped); a repeat costs nothing, whichever the reason for "not found".
    for kind, (first_calls, again_calls) in samples.items():
        assert first_calls == [2] * ROUNDS, kind
        assert again_calls == [0] * ROUNDS, kind


def test_unknown_names_and_ids_are_remembered_for_ten_minutes(world: World) -> None:
    for ref in ("no-such-device", nth_machine_id(77)):
        with pytest.raises(DeviceNotFound):
            world.service.device_alerts(ref, scope=WORKSTATIONS)
    asked = len(world.tenant.request_log)
    for _ in range(5):
        for ref in ("no-such-device", nth_machine_id(77)):
            with pytest.raises(DeviceNotFound):
                world.service.device_alerts(ref, scope=WORKSTATIONS)
    assert len(world.tenant.request_log) == asked
    world.clock.advance(MISS_TTL + 1)
    with pytest.raises(DeviceNotFound):
        world.service.device_alerts("no-such-device", scope=WORKSTATIONS)
    assert len(world.tenant.request_log) > asked


def test_a_remembered_miss_keeps_its_suggestions_without_a_scope(world: World) -> None:
    with pytest.raises(DeviceNotFound) as first:
        world.service.device_alerts("ws-fin")
    asked = len(world.tenant.request_log)
    with pytest.raises(DeviceNotFound) as again:
        world.service.device_alerts("ws-fin")
    assert again.value.suggestions == first.value.suggestions != ()
    assert len(world.tenant.request_log) == asked


def _requests_counted() -> dict[tuple[str, ...], float]:
    return {
        tuple(sample.labels.values()): sample.value
        for metric in DEFENDER_REQUESTS.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


def _delta(world: World, ref: str) -> dict[tuple[str, ...], float]:
    before = _requests_counted()
    with pytest.raises(DeviceNotFound):
        AlertService(world.client, clock=world.clock, now=world.clock.wall).device_alerts(ref, scope=WORKSTATIONS)
    return {
        labels: value - before.get(labels, 0)
        for labels, value in _requests_counted().items()
        if value != before.get(labels, 0)
    }


def test_metrics_count_an_out_of_scope_device_like_a_missing_one() -> None:
    """`/metrics` counts Defender requests by endpoint and outcome: a 404 is "ok", like the 200 of a device
    outside the scope, so the counts after a member's lookup do not say which it was."""
    world = World(per_minute=100_000)
    assert (
        _delta(world, "srv-dc-01.contoso.local")
        == _delta(world, "ws-nope-001")
        == {("machines", "ok"): 2.0}  # the name's records, then the prefix search
    )
    assert (
        _delta(world, world.machine_id("srv-dc-01.contoso.local"))
        == _delta(world, nth_machine_id(5))
        == {("machine", "ok"): 1.0, ("machine-alerts", "ok"): 1.0}  # an id's alerts are asked for beside its details
    )


# A first lookup in one round trip -----------------------------------------------------------------------------------


class Rendezvous:
    """A source that holds each details and alerts request until the other has arrived too.

    A lookup that asks one after the other never gets past the first (`BrokenBarrierError` once the guard runs out).
    """

    def __init__(self, inner: AlertSource) -> None:
        self.inner = inner
        self.both = threading.Barrier(2, timeout=10)

    def get_machine(self, id_or_name: str, **kwargs: Any) -> Machine:
        self.both.wait()
        return self.inner.get_machine(id_or_name, **kwargs)

    def get_device_alerts(self, machine_id: str, **kwargs: Any) -> list[Alert]:
        self.both.wait()
        return self.inner.get_device_alerts(machine_id, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("scope", [EVERY_DEVICE, WORKSTATIONS], ids=["unscoped", "scoped"])
def test_a_first_lookup_by_id_asks_for_details_and_alerts_at_once(world: World, scope: DeviceScope) -> None:
    source = Rendezvous(world.client)
    service = AlertService(cast(AlertSource, source), clock=world.clock, now=world.clock.wall)
    mid = world.machine_id(FIN)

    result = service.device_alerts(mid, scope=scope)

    assert result.machine is not None and result.machine.computer_dns_name == FIN
    assert {a.id for a in result.alerts} == {a["id"] for a in world.shown(mid)}
    assert not source.both.broken
    service.device_alerts(mid, refresh=True)  # details cached: the alerts alone, no rendezvous needed
    service.close()


def test_an_id_outside_the_scope_never_shows_the_alerts_fetched_beside_its_details(world: World) -> None:
    hidden = world.machine_id("srv-sql-02.contoso.local")
    with pytest.raises(DeviceNotFound) as caught:
        world.service.device_alerts(hidden, scope=WORKSTATIONS)
    assert caught.value.suggestions == ()
    assert world.service.device_alerts(hidden).total == len(world.shown(hidden))  # an unscoped person may see them


def _written(alert: Alert, wall: datetime) -> Alert:
    """`alert` as Defender answers a status change made now."""
    return dataclasses.replace(alert, status=AlertStatus.RESOLVED, last_update=wall)


def test_a_written_alert_replaces_its_cached_copy_and_the_list_keeps_its_age(world: World) -> None:
    mid = world.machine_id(FIN)
    first = world.service.device_alerts(mid)
    world.clock.advance(40)
    target = next(a for a in first.alerts if a.status is not AlertStatus.RESOLVED)
    assert world.service.replace_alert(mid, _written(target, world.clock.wall()))
    after = world.service.device_alerts(mid)
    assert after.from_cache and after.fetched_at == first.fetched_at and after.age == timedelta(seconds=40)
    assert next(a for a in after.alerts if a.id == target.id).status is AlertStatus.RESOLVED
    assert {a.id for a in after.alerts} == {a.id for a in first.alerts}
    calls = world.calls("alerts")
    world.clock.advance(21)  # the list is past its TTL, counted from its fetch and not from the write
    assert not world.service.device_alerts(mid).from_cache
    assert world.calls("alerts") == calls + 1


def test_a_written_alert_needs_a_cached_list_and_never_replaces_a_newer_version(world: World) -> None:
    mid = world.machine_id(FIN)
    cached = world.service.device_alerts(mid).alerts[0]
    assert world.service.replace_alert("f" * 40, cached) is False  # no list for that device: the next lookup reads
    older = dataclasses.replace(cached, status=AlertStatus.NEW, last_update=datetime(2020, 1, 1, tzinfo=UTC))
    assert world.service.replace_alert(mid, older)
    assert next(a for a in world.service.device_alerts(mid).alerts if a.id == cached.id) == cached


def test_a_copy_within_the_plain_ttl_is_served_without_reading_the_budget() -> None:
    """Pacing only lengthens the TTL; reading the hour's share left is a Redis call with several processes."""
    clock, reads = FakeClock(), []
    tenant = SimulatedTenant()
    client = DefenderClient(SIMULATOR_BASE_URL, StaticTokenProvider("t"), transport=SimulatorTransport(tenant))

    def share_left(priority: Priority) -> float:
        reads.append(priority)
        return 0.5  # a quarter of the hour's budget used: paced, the list counts as fresh for 4 × the TTL

    service = AlertService(client, ttl=60.0, clock=clock, budget_share_left=share_left)
    mid = machine_id(tenant, FIN)
    service.device_alerts(mid)
    first = len(reads)
    clock.advance(59)
    assert service.device_alerts(mid).from_cache and len(reads) == first  # within the TTL: no read
    clock.advance(61)
    assert service.device_alerts(mid).from_cache and len(reads) == first + 1  # past it: paced, one read
