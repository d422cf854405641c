"""Several bot processes' Defender sides on one Redis (`REDIS_URL`, see tests/doubles/redis.py), and a bot
whose Redis is not there.

Three `RedisProcess`es on the same key prefix stand for three processes: each has its own connection pool, its
own process-local caches and its own client, and they share only what Redis holds. Here: one budget, the
cluster-wide 429 block, the shared cache and single flight, and a bot started without its Redis. Each Redis piece
on its own is in tests/unit/state/redis/, the watch store and the budget in tests/unit/state/, and Redis going
away under a running process in tests/system/test_redis_outage.py.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from bot.config import load_settings
from bot.defender.errors import Throttled
from bot.defender.limits import Api, BudgetExhausted
from bot.defender.simulator import SimulatedTenant
from bot.state.redis.budget import RedisRateBudget
from tests.doubles.processes import free_port
from tests.doubles.redis import RedisProcess, require_redis, shared_state, unique_prefix, url_with_prefix

FIN = "ws-fin-014.contoso.local"


def _kind(path: str) -> str:
    bare = path.split("?")[0]
    if bare.endswith("/alerts"):
        return "alerts"
    return "machines" if bare == "/api/machines" else "machine"


@pytest.fixture
def cluster() -> Iterator[tuple[SimulatedTenant, list[RedisProcess]]]:
    """Three processes on one Redis prefix and one simulated tenant."""
    with shared_state() as state:
        tenant = SimulatedTenant()
        processes = [RedisProcess(url_with_prefix(state.prefix), tenant) for _ in range(3)]
        try:
            yield tenant, processes
        finally:
            for process in processes:
                process.close()


def calls(tenant: SimulatedTenant) -> Counter[str]:
    return Counter(_kind(path) for _, path in tenant.request_log)


# -- the budget across processes ----------------------------------------------------------------------------------


def test_one_budget_for_all_processes(cluster: tuple[SimulatedTenant, list[RedisProcess]]) -> None:
    _, processes = cluster
    budgets = [RedisRateBudget(p.shared, per_minute=10, per_hour=100) for p in processes]
    made, waits = 0, []
    for turn in range(30):
        try:
            budgets[turn % 3].acquire(Api.MACHINE_ALERTS)
            made += 1
        except BudgetExhausted as exc:
            waits.append(exc.retry_after)
    assert made == 10  # not 3 × 10
    assert all(0 < wait <= 60 for wait in waits)
    assert budgets[1].usage(Api.MACHINE_ALERTS).used_last_minute == 10


def test_a_429_in_one_process_stops_the_others(cluster: tuple[SimulatedTenant, list[RedisProcess]]) -> None:
    tenant, (one, two, _) = cluster
    mid = next(m["id"] for m in tenant.machines if m["computerDnsName"] == FIN)
    tenant.fail_next(429, retry_after=30)
    with pytest.raises(Throttled):
        one.client.get_device_alerts(mid)
    asked = tenant.calls
    with pytest.raises(Throttled) as caught:
        two.client.get_device_alerts(mid)  # never sent: process one's Retry-After holds here too
    assert 25 < caught.value.retry_after <= 30
    assert tenant.calls == asked
    assert two.budget.blocked_for(Api.MACHINE_ALERTS) > 25
    assert two.budget.blocked_for(Api.ALERTS) == 0  # per API, like Defender's counters
    two.budget.block(Api.MACHINE_ALERTS, 5)  # a shorter block never shortens a longer one
    assert two.budget.blocked_for(Api.MACHINE_ALERTS) > 25


# -- the cache and single flight across processes -----------------------------------------------------------------


def test_a_device_looked_up_in_one_process_costs_the_others_nothing(
    cluster: tuple[SimulatedTenant, list[RedisProcess]],
) -> None:
    tenant, (one, two, three) = cluster
    first = one.service.device_alerts("ws-fin-014")  # by short name: resolve, then the alert list
    before = calls(tenant)
    second = two.service.device_alerts("ws-fin-014")
    third = three.service.device_alerts(first.machine_id)
    assert calls(tenant) == before  # names, details and alerts all came from Redis
    assert second.alerts == first.alerts == third.alerts
    assert second.machine == first.machine
    assert second.from_cache and third.from_cache
    assert second.fetched_at == first.fetched_at


def test_concurrent_lookups_in_three_processes_make_one_call(
    cluster: tuple[SimulatedTenant, list[RedisProcess]],
) -> None:
    tenant, processes = cluster
    mid = next(m["id"] for m in tenant.machines if m["computerDnsName"] == FIN)
    processes[0].service.device_alerts(mid)  # details cached; the alert list is what the storm is about
    tenant.latency = 0.3
    for process in processes:  # force a fetch: no fresh list anywhere
        process.forget_local()
    process_cache = processes[0].shared
    process_cache.client.delete(process_cache.key("alerts", mid))
    before = calls(tenant)["alerts"]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda n: processes[n % 3].service.device_alerts(mid), range(12)))
    assert calls(tenant)["alerts"] - before == 1
    assert len({r.fetched_at for r in results}) == 1


def test_a_dead_lock_holder_does_not_wedge_the_others(cluster: tuple[SimulatedTenant, list[RedisProcess]]) -> None:
    tenant, (one, _, _) = cluster
    mid = next(m["id"] for m in tenant.machines if m["computerDnsName"] == FIN)
    one.service.device_alerts(mid)
    one.forget_local()
    one.shared.client.delete(one.shared.key("alerts", mid))
    # A process took the lock for this device and died: its lock expires (here in 0.4 s), nobody waits longer.
    one.shared.client.set(one.shared.key("flight", f"alerts:{mid}"), "dead-process", px=400)
    started = time.monotonic()
    result = one.service.device_alerts(mid)
    waited = time.monotonic() - started
    assert 0.3 < waited < 2.0
    assert result.alerts


def test_alert_lists_are_stored_compactly(cluster: tuple[SimulatedTenant, list[RedisProcess]]) -> None:
    tenant, (one, _, _) = cluster
    busy = one.service.device_alerts("srv-build-07.contoso.local")
    stored = one.shared.client.get(one.shared.key("alerts", busy.machine_id))
    assert isinstance(stored, bytes)
    raw = [a for a in tenant.alerts if a.get("machineId") == busy.machine_id]
    print(f"\n{len(raw)} alerts: {len(stored)} bytes in Redis")
    assert len(raw) == 500
    assert len(stored) < 60_000  # ~120 bytes an alert; the JSON Defender sent is ~10 times that
    ttl = one.shared.client.pttl(one.shared.key("alerts", busy.machine_id))
    assert 890_000 < ttl <= 900_000


def test_a_payload_from_other_code_is_a_miss(cluster: tuple[SimulatedTenant, list[RedisProcess]]) -> None:
    tenant, (one, two, _) = cluster
    mid = next(m["id"] for m in tenant.machines if m["computerDnsName"] == FIN)
    one.shared.client.set(one.shared.key("alerts", mid), b"not what this code writes")
    assert two.cache.get_alerts(mid) is None
    two.service.device_alerts(mid)
    assert calls(tenant)["alerts"] == 1


def test_health_says_where_shared_state_lives() -> None:
    require_redis()
    from bot.runtime import build_runtime

    prefix = unique_prefix()
    runtime = build_runtime(load_settings({"BOT_STATE_URL": url_with_prefix(prefix)}))
    try:
        assert runtime.state.shared is not None
        assert isinstance(runtime.budget, RedisRateBudget)
        assert runtime.state.status() == "redis"
    finally:
        runtime.close()
    local = build_runtime(load_settings({"BOT_STATE_URL": "sqlite:///:memory:"}))
    try:
        assert local.state.shared is None
        assert local.state.status() == "local"
    finally:
        local.close()


def test_a_bot_started_without_its_redis_answers_lookups_from_a_local_share() -> None:
    from tests.doubles.slack import harness

    dead = f"redis://127.0.0.1:{free_port()}/0"
    for rig in harness(state_url=dead, env={"BOT_AUDIT_LOG": "off"}):
        started = time.monotonic()
        ack = rig.command("ws-fin-014")
        assert ack.status == 200
        assert time.monotonic() - started < 1.0
        [card] = rig.standin.wait_for_posts(1)
        assert str(card.payload["text"]).startswith(FIN)
        health = rig.bot.health()
        assert health["shared_state"] == "redis-unavailable"
        assert health["watches"]["live"] is None
        assert health["budget"]["machine-alerts"]["minute_left"] == 99  # BOT_PROCESSES=1: the whole budget locally


def test_watch_commands_without_redis_are_answered_not_dropped() -> None:
    """`watches` runs inside the acknowledgement: with the store down it still answers, and says why."""
    from bot.slack.listeners import WATCHES_UNAVAILABLE
    from tests.doubles.slack import ack_json, harness

    dead = f"redis://127.0.0.1:{free_port()}/0"
    for rig in harness(state_url=dead, env={"BOT_AUDIT_LOG": "off"}):
        ack = ack_json(rig.command("watches"))
        assert ack["text"] == WATCHES_UNAVAILABLE
