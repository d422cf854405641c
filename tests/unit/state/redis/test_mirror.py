"""The Graph alert mirror's stores: the same contract in memory and in Redis, and one mirror for several processes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.alerts.mirror import GraphAlertSource
from bot.defender.auth import StaticTokenProvider
from bot.defender.graph import GraphClient
from bot.defender.models import Alert, AlertDevice, AlertStatus, Machine, format_timestamp, parse_alert, parse_machine
from bot.defender.simulator import GRAPH_SIMULATOR_BASE_URL, SimulatedTenant, SimulatorTransport
from bot.state.mirror import MemoryMirror, MirrorStore
from bot.state.redis.connection import RedisConnection
from bot.state.redis.mirror import RedisMirror
from tests.doubles.redis import shared_state, url_with_prefix

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ONE, TWO = "1" * 40, "2" * 40


def alert(alert_id: str, minutes: int, *devices: str, status: str = "New") -> Alert:
    parsed = parse_alert(
        {
            "id": alert_id,
            "title": f"alert {alert_id}",
            "severity": "High",
            "status": status,
            "alertCreationTime": format_timestamp(NOW - timedelta(days=1)),
            "lastUpdateTime": format_timestamp(NOW + timedelta(minutes=minutes)),
            "machineId": devices[0],
        }
    )
    return replace(parsed, devices=tuple(AlertDevice(d, None, None) for d in devices))


def machine(machine_id: str, name: str) -> Machine:
    return parse_machine({"id": machine_id, "computerDnsName": name, "healthStatus": "Active"})


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[MirrorStore]:
    if request.param == "memory":
        yield MemoryMirror(max_alerts=3)
        return
    with shared_state() as shared:
        yield RedisMirror(shared, max_alerts=3)


def test_an_alert_of_two_devices_is_on_both_and_an_older_copy_never_wins(store: MirrorStore) -> None:
    store.merge([alert("a", 5, ONE, TWO)], {ONE: machine(ONE, "ws-one.contoso.local")})
    store.merge([alert("a", 1, ONE, status="Resolved")], {})  # re-read through the overlap, older
    assert [a.id for a in store.device_alerts(ONE)] == ["a"] == [a.id for a in store.device_alerts(TWO)]
    assert store.device_alerts(ONE)[0].status is AlertStatus.NEW
    assert store.watermark() is None  # nothing committed until a sync has read everything


def test_devices_are_found_by_id_name_and_prefix(store: MirrorStore) -> None:
    store.merge([], {ONE: machine(ONE, "WS-One.contoso.local"), TWO: machine(TWO, "srv-two.contoso.local")})
    found = store.device(ONE)
    assert found is not None and found.id == ONE
    named = store.device_named("ws-one.contoso.local")
    assert named is not None and named.id == ONE
    assert [m.id for m in store.devices_named("ws-")] == [ONE]
    assert store.device_named("nobody.contoso.local") is None


def test_deltas_and_the_bound_keep_the_most_recently_updated(store: MirrorStore) -> None:
    store.merge([alert(name, minutes, ONE) for name, minutes in (("a", 1), ("b", 2), ("c", 3), ("d", 4))], {})
    assert store.alert_count() == 3
    assert sorted(a.id for a in store.device_alerts(ONE)) == ["b", "c", "d"]
    assert sorted(a.id for a in store.updated_since(NOW + timedelta(minutes=3))) == ["c", "d"]


def test_a_finished_sync_commits_its_start_and_watermark_which_never_moves_back(store: MirrorStore) -> None:
    assert store.synced_at() is None
    store.mark_synced(NOW, NOW + timedelta(minutes=5))
    store.mark_synced(NOW + timedelta(seconds=10), NOW + timedelta(minutes=1))  # an older answer, read late
    store.mark_synced(NOW + timedelta(seconds=20), None)  # a delta that found nothing
    assert store.synced_at() == NOW + timedelta(seconds=20)
    assert store.watermark() == NOW + timedelta(minutes=5)


def source(tenant: SimulatedTenant, store: MirrorStore, now: datetime) -> GraphAlertSource:
    graph = GraphClient(GRAPH_SIMULATOR_BASE_URL, StaticTokenProvider("t"), transport=SimulatorTransport(tenant))
    return GraphAlertSource(graph, store, now=lambda: now)


def alert_calls(tenant: SimulatedTenant) -> int:
    return sum(1 for _, path in tenant.request_log if "alerts_v2" in path)


def test_two_processes_share_one_mirror_and_one_backfill() -> None:
    tenant = SimulatedTenant(now=lambda: NOW)
    fin = next(str(m["id"]) for m in tenant.machines if m["computerDnsName"] == "ws-fin-014.contoso.local")
    with shared_state() as first:
        second = RedisConnection(first.url)
        try:
            one, two = source(tenant, RedisMirror(first), NOW), source(tenant, RedisMirror(second), NOW)
            assert one.get_device_alerts(fin)
            assert {a.id for a in two.get_device_alerts(fin)} == {a.id for a in one.get_device_alerts(fin)}
            assert alert_calls(tenant) == 1  # the second process read what the first one mirrored
        finally:
            second.close()


def test_while_redis_is_away_a_process_mirrors_for_itself() -> None:
    tenant = SimulatedTenant(now=lambda: NOW)
    fin = next(str(m["id"]) for m in tenant.machines if m["computerDnsName"] == "ws-fin-014.contoso.local")
    away = RedisConnection("redis://127.0.0.1:1/15")  # nothing listens on port 1
    try:
        mirror = source(tenant, RedisMirror(away), NOW)
        assert mirror.get_device_alerts(fin)
        assert mirror.get_device_alerts(fin)  # fresh: served from the process's own copy
        assert alert_calls(tenant) == 1
    finally:
        away.close()


def test_a_sync_longer_than_many_lock_lifetimes_keeps_its_lock_and_no_other_process_syncs_meanwhile() -> None:
    """A backfill reading page after page renews its short lock: the lock keeps the holder's token the whole time,
    and another process asking for a sync meanwhile waits for the holder's result instead of syncing again."""
    with shared_state() as shared:
        other = RedisConnection(url_with_prefix(shared.prefix))
        try:
            holder, waiter = RedisMirror(shared, lock_ttl=0.3), RedisMirror(other, lock_ttl=0.3)
            lock = shared.key("flight", "mirror:sync")
            tokens: set[bytes | None] = set()
            renewals = 0
            synced: list[str] = []
            in_sync = threading.Event()

            def backfill() -> str:
                nonlocal renewals
                in_sync.set()
                left = shared.client.pttl(lock)
                while renewals < 10:  # ten renewals: over three lock lifetimes, whatever the machine's speed
                    tokens.add(shared.client.get(lock))
                    now_left = shared.client.pttl(lock)
                    renewals += now_left > left
                    left = now_left
                    time.sleep(0.01)
                synced.append("holder")
                return "synced"

            thread = threading.Thread(target=lambda: holder.single_flight("sync", backfill, lambda: None))
            thread.start()
            assert in_sync.wait(5)
            result = waiter.single_flight(
                "sync", lambda: synced.append("waiter") or "again", lambda: "landed" if synced else None
            )
            thread.join()
            assert result == ("landed", True)
            assert synced == ["holder"]
            assert len(tokens) == 1 and None not in tokens  # never lapsed, never another holder's
            assert shared.client.exists(lock) == 0  # released at the end
        finally:
            other.close()
