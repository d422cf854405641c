"""The Graph alert mirror against the simulator's Graph view: what it costs, and that it loses nothing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bot.alerts.mirror import OVERLAP, GraphAlertSource
from bot.alerts.scope import DeviceScope
from bot.alerts.service import AlertService
from bot.defender.auth import StaticTokenProvider
from bot.defender.client import DefenderClient
from bot.defender.errors import DefenderUnavailable, DeviceNotFound
from bot.defender.graph import GraphClient
from bot.defender.limits import Api, ApiLimits, BudgetExhausted
from bot.defender.simulator import (
    GRAPH_SIMULATOR_BASE_URL,
    HOSTILE_HOSTNAME,
    SIMULATOR_BASE_URL,
    SimulatedTenant,
    SimulatorTransport,
)
from bot.defender.simulator.dataset import iso
from bot.demo.clock import FakeClock
from bot.state.budget import RateBudget
from bot.state.mirror import MemoryMirror

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
FIN = "ws-fin-014.contoso.local"


class Wall:
    """The tenant's and the bot's wall clock, moved by hand."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def tenant(wall: Wall, clock: FakeClock) -> SimulatedTenant:
    return SimulatedTenant(now=wall, clock=clock)


@pytest.fixture
def mirror(tenant: SimulatedTenant, clock: FakeClock, wall: Wall) -> Iterator[GraphAlertSource]:
    graph = GraphClient(
        GRAPH_SIMULATOR_BASE_URL,
        StaticTokenProvider("t"),
        transport=SimulatorTransport(tenant),
        clock=clock,
        sleep=clock.sleep,
    )
    source = GraphAlertSource(graph, backfill=timedelta(days=30), now=wall)
    yield source
    source.close()


def graph_calls(tenant: SimulatedTenant, kind: str = "alerts_v2") -> int:
    return sum(1 for _, path in tenant.request_log if kind in path)


def machine_id(tenant: SimulatedTenant, hostname: str) -> str:
    return str(next(m["id"] for m in tenant.machines if m["computerDnsName"] == hostname))


def mde_alert_ids(tenant: SimulatedTenant, clock: FakeClock, mid: str) -> set[str]:
    transport = SimulatorTransport(tenant)
    with DefenderClient(SIMULATOR_BASE_URL, StaticTokenProvider("t"), transport=transport, clock=clock) as mde:
        return {a.id for a in mde.get_device_alerts(mid)}


def test_a_device_has_through_the_mirror_every_alert_the_defender_api_lists(
    mirror: GraphAlertSource, tenant: SimulatedTenant, clock: FakeClock
) -> None:
    mid = machine_id(tenant, FIN)
    through_graph = {a.id for a in mirror.get_device_alerts(mid)}
    recent = {
        a["id"] for a in tenant.alerts if a["machineId"] == mid and a["lastUpdateTime"] >= iso(NOW - timedelta(days=30))
    }
    assert recent and recent <= mde_alert_ids(tenant, clock, mid)
    assert recent <= through_graph  # plus alerts that name this device as a second device in their evidence
    assert all(mid in alert.machine_ids for alert in mirror.get_device_alerts(mid))


def test_a_storm_of_lookups_for_every_device_costs_one_backfill(
    mirror: GraphAlertSource, tenant: SimulatedTenant
) -> None:
    devices = [str(m["id"]) for m in tenant.machines]
    for machine in devices * 3:
        mirror.get_device_alerts(machine)
    assert graph_calls(tenant) == 1  # the backfill; every lookup inside max_age reads the mirror
    assert graph_calls(tenant, "runHuntingQuery") == 0


def test_after_max_age_one_delta_serves_every_device(
    mirror: GraphAlertSource, tenant: SimulatedTenant, wall: Wall
) -> None:
    mirror.get_device_alerts(machine_id(tenant, FIN))
    wall.now += timedelta(seconds=6)
    for machine in tenant.machines:
        mirror.get_device_alerts(str(machine["id"]))
    assert graph_calls(tenant) == 2
    delta = [path for _, path in tenant.request_log if "alerts_v2" in path][-1]
    assert "lastUpdateDateTime" in delta


def test_a_late_alert_with_an_old_update_time_is_still_found(
    mirror: GraphAlertSource, tenant: SimulatedTenant, clock: FakeClock, wall: Wall
) -> None:
    """Ingestion lag: the alert appears in the API minutes after its lastUpdateDateTime. The watermark is taken
    from Graph's data and re-read with an overlap, so it is not skipped however the host's clock runs."""
    mid = machine_id(tenant, FIN)
    mirror.get_device_alerts(mid)
    newest = max(a["lastUpdateTime"] for a in tenant.alerts)
    wall.now += timedelta(minutes=20)  # the bot's clock moves on; the late alert is dated before the watermark
    late = tenant.add_alert(mid, title="Arrived late", lastUpdateTime=newest, alertCreationTime=newest)
    wall.now += timedelta(seconds=6)
    assert late["id"] in {a.id for a in mirror.get_device_alerts(mid)}


def test_a_status_change_replaces_the_mirrored_copy(
    mirror: GraphAlertSource, tenant: SimulatedTenant, clock: FakeClock, wall: Wall
) -> None:
    mid = machine_id(tenant, FIN)
    [open_alert, *_] = [a for a in mirror.get_device_alerts(mid) if a.is_open]
    wall.now += timedelta(minutes=1)
    tenant.set_alert_status(open_alert.id, "Resolved")
    wall.now += timedelta(seconds=6)
    [now_resolved] = [a for a in mirror.get_device_alerts(mid) if a.id == open_alert.id]
    assert not now_resolved.is_open
    assert len([a for a in mirror.get_device_alerts(mid) if a.id == open_alert.id]) == 1


def test_the_poller_delta_is_answered_from_one_graph_call(
    mirror: GraphAlertSource, tenant: SimulatedTenant, clock: FakeClock, wall: Wall
) -> None:
    mid = machine_id(tenant, FIN)
    mirror.get_device_alerts(mid)
    wall.now += timedelta(minutes=1)
    added = tenant.add_alert(mid, title="New during the watch")
    since = wall.now
    wall.now += timedelta(seconds=2)
    updated = mirror.list_alerts_updated_since(since)
    assert [a.id for a in updated] == [added["id"]]
    assert graph_calls(tenant) == 2


def test_device_ids_in_evidence_cost_no_hunting_and_names_are_hunted(
    mirror: GraphAlertSource, tenant: SimulatedTenant
) -> None:
    mirror.sync()
    assert mirror.get_machine(machine_id(tenant, FIN)).id == machine_id(tenant, FIN)
    assert graph_calls(tenant, "runHuntingQuery") == 0
    quiet = next(m for m in tenant.machines if not any(a["machineId"] == m["id"] for a in tenant.alerts))
    assert mirror.get_machine(str(quiet["id"])).id == quiet["id"]  # no alert: advanced hunting
    assert graph_calls(tenant, "runHuntingQuery") == 1
    # Which record of a re-onboarded name is live only DeviceInfo knows: a name is hunted even when in evidence.
    assert mirror.get_machine(FIN).id == machine_id(tenant, FIN)
    assert graph_calls(tenant, "runHuntingQuery") == 2
    with pytest.raises(DeviceNotFound):
        mirror.get_machine("no-such-host.contoso.local")


def test_prefix_search_finds_devices_from_hunting_and_the_mirror(
    mirror: GraphAlertSource, tenant: SimulatedTenant
) -> None:
    found = {m.computer_dns_name for m in mirror.find_machines("ws-fin", prefix=True)}
    assert FIN in found
    assert HOSTILE_HOSTNAME not in found


def test_the_mirror_keeps_at_most_max_alerts_the_most_recently_updated(
    tenant: SimulatedTenant, clock: FakeClock, wall: Wall, caplog: pytest.LogCaptureFixture
) -> None:
    graph = GraphClient(GRAPH_SIMULATOR_BASE_URL, StaticTokenProvider("t"), transport=SimulatorTransport(tenant))
    source = GraphAlertSource(graph, MemoryMirror(50), now=wall)
    with caplog.at_level(logging.WARNING, logger="bot.alerts.mirror"):
        source.sync()
    kept = {a.id for m in tenant.machines for a in source.get_device_alerts(str(m["id"]))}
    source.close()
    assert source.store.alert_count() == len(kept) == 50
    recent = [a for a in tenant.alerts if a["lastUpdateTime"] >= iso(NOW - timedelta(days=30))]
    newest_first = sorted(recent, key=lambda a: a["lastUpdateTime"], reverse=True)
    assert {a["id"] for a in newest_first[:45]} <= kept  # ties at the cut may go either way
    assert isinstance(source.store, MemoryMirror) and source.store.evicted > 0


def test_the_alert_service_answers_from_the_mirror(
    mirror: GraphAlertSource, tenant: SimulatedTenant, clock: FakeClock, wall: Wall
) -> None:
    service = AlertService(mirror, clock=clock, now=wall)
    first = service.device_alerts(FIN)
    assert first.machine_id == machine_id(tenant, FIN) and first.total >= 1
    for machine in tenant.machines:
        try:
            service.device_alerts(str(machine["id"]))
        except DeviceNotFound:
            continue  # a record older than hunting's 30 days, with no recent alert
    assert service.device_alerts("ws-fin-014").machine_id == first.machine_id  # a short name: a prefix hunt
    assert graph_calls(tenant) == 1  # every alert list came from the one backfill
    assert graph_calls(tenant, "runHuntingQuery") <= len(tenant.machines)


def test_clock_skew_is_logged(
    mirror: GraphAlertSource, tenant: SimulatedTenant, wall: Wall, caplog: pytest.LogCaptureFixture
) -> None:
    wall.now -= timedelta(minutes=10)  # this host runs behind Graph
    with caplog.at_level(logging.WARNING, logger="bot.alerts.mirror"):
        tenant.add_alert(machine_id(tenant, FIN), lastUpdateTime=iso(NOW + OVERLAP))
        mirror.sync()
    assert any("ahead of this host's clock" in r.getMessage() for r in caplog.records)


def test_device_group_scopes_hold_through_graph(
    mirror: GraphAlertSource, tenant: SimulatedTenant, clock: FakeClock, wall: Wall
) -> None:
    """The group comes from the evidence (`rbacGroupName`) or hunting (`MachineGroup`), as through MDE."""
    service = AlertService(mirror, clock=clock, now=wall)
    group = next(m["rbacGroupName"] for m in tenant.machines if m["computerDnsName"] == FIN)
    assert service.device_alerts(FIN, scope=DeviceScope(frozenset({group.casefold()}))).total >= 1
    with pytest.raises(DeviceNotFound) as refused:
        service.device_alerts(FIN, scope=DeviceScope(frozenset({"no-such-group"})))
    assert refused.value.suggestions == ()
    quiet = next(m for m in tenant.machines if not any(a["machineId"] == m["id"] for a in tenant.alerts))
    with pytest.raises(DeviceNotFound):  # known to hunting only, and outside the scope
        service.device_alerts(str(quiet["id"]), scope=DeviceScope(frozenset({"no-such-group"})))


class FailingAfterFirstPage(SimulatorTransport):
    """Defender's simulator, answering 503 to every alerts_v2 page after the first while `failing` is set."""

    def __init__(self, tenant: SimulatedTenant) -> None:
        super().__init__(tenant)
        self.failing = True
        self.pages = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if "alerts_v2" in request.url.path:
            self.pages += 1
            if self.failing and self.pages > 1:
                return httpx.Response(503, json={"error": {"code": "ServiceUnavailable", "message": "busy"}})
        return super().handle_request(request)


def test_a_backfill_that_fails_half_way_is_read_again_not_skipped(
    tenant: SimulatedTenant, clock: FakeClock, wall: Wall
) -> None:
    transport = FailingAfterFirstPage(tenant)
    graph = GraphClient(
        GRAPH_SIMULATOR_BASE_URL,
        StaticTokenProvider("t"),
        transport=transport,
        page_size=5,
        clock=clock,
        sleep=clock.sleep,
    )
    source = GraphAlertSource(graph, now=wall)
    with pytest.raises(DefenderUnavailable):
        source.sync()
    assert source.store.watermark() is None and source.store.synced_at() is None
    transport.failing = False
    source.sync()
    recent = {a["id"] for a in tenant.alerts if a["lastUpdateTime"] >= iso(NOW - timedelta(days=30))}
    mirrored = {a.id for m in tenant.machines for a in source.store.device_alerts(str(m["id"]))}
    assert recent <= mirrored  # the whole window, not just what the first page held
    source.close()


def test_a_backfill_stopped_by_the_budget_resumes_where_it_stopped(
    tenant: SimulatedTenant, clock: FakeClock, wall: Wall
) -> None:
    """A tenant larger than a minute of the budget: each sync reads what the budget allows, the next goes on
    below the oldest alert read, and the mirror is complete in the end with every page read once."""
    budget = RateBudget(per_api={Api.GRAPH_ALERTS: ApiLimits(3, 1500)}, clock=clock)
    graph = GraphClient(
        GRAPH_SIMULATOR_BASE_URL,
        StaticTokenProvider("t"),
        gate=budget,
        transport=SimulatorTransport(tenant),
        page_size=5,
        max_pages=1,
        clock=clock,
        sleep=clock.sleep,
    )
    source = GraphAlertSource(graph, now=wall)
    attempts = 0
    for _ in range(40):  # 3 pages a minute
        attempts += 1
        try:
            source.sync()
            break
        except BudgetExhausted:
            assert source.store.watermark() is None  # nothing committed until the whole span is read
            clock.advance(61)
            wall.now += timedelta(seconds=61)
    else:
        pytest.fail("the backfill never finished: each sync started again from the top")
    recent = {a["id"] for a in tenant.alerts if a["lastUpdateTime"] >= iso(NOW - timedelta(days=30))}
    mirrored = {a.id for m in tenant.machines for a in source.store.device_alerts(str(m["id"]))}
    assert recent <= mirrored
    pages = graph_calls(tenant)
    assert attempts > 1 and pages <= len(recent) // 5 + 2  # each page once (plus the last, empty read)
    source.close()


def test_a_start_up_sync_that_fails_is_logged_and_the_first_lookup_syncs(
    mirror: GraphAlertSource, tenant: SimulatedTenant, caplog: pytest.LogCaptureFixture
) -> None:
    tenant.fail_next(403, code="Forbidden")  # refused, never retried: the warm-up gives up at once
    with caplog.at_level(logging.WARNING):
        mirror.warm_up()
        for thread in threading.enumerate():
            if thread.name == "graph-mirror-warm-up":
                thread.join()
    assert "the start-up sync failed" in caplog.text
    assert mirror.store.synced_at() is None
    assert mirror.get_device_alerts(machine_id(tenant, FIN))
    assert graph_calls(tenant) == 2  # the refused warm-up, then the lookup's own backfill


def test_a_start_up_sync_cut_short_by_closing_ends_quietly(
    mirror: GraphAlertSource, caplog: pytest.LogCaptureFixture
) -> None:
    """The bot closing under a backfill that outlasts `close`'s wait: its client is closed under the sync."""
    mirror.close()
    with caplog.at_level(logging.INFO):
        mirror.warm_up()
        for thread in threading.enumerate():
            if thread.name == "graph-mirror-warm-up":
                thread.join()
    assert "the start-up sync stopped as the bot closed" in caplog.text
    assert mirror.store.synced_at() is None
