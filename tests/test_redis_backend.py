"""The Redis backend piece by piece, against a real server (`REDIS_URL`, see tests/redis_support.py).

Two objects built on the same key prefix stand for two processes: each has its own connection pool, its own
process-local caches and its own client, and they share only what Redis holds. The watch store's behaviour is
tested with the SQLite one in tests/test_watch_store.py and the budget's in tests/test_budget.py; here: URLs,
the cluster-wide 429 block, the shared cache and single flight, event dedupe, and life without Redis.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bot.alerts.service import AlertService
from bot.config import ConfigError, load_settings
from bot.defender.auth import StaticTokenProvider
from bot.defender.client import DefenderClient
from bot.defender.errors import Throttled
from bot.defender.limits import Api, BudgetExhausted
from bot.defender.simulator import SIMULATOR_BASE_URL, SimulatedTenant, SimulatorTransport
from bot.state.redis.budget import RedisRateBudget
from bot.state.redis.cache import RedisSharedCache
from bot.state.redis.connection import SharedState, SharedStateDown
from bot.state.redis.dedupe import RedisEventDeduper
from bot.state.redis.flight import ClusterFlight
from bot.state.redis.limits import RedisRequestLimiter
from bot.state.redis.watches import RedisWatchStore
from bot.state.urls import parse_redis_url, redact
from tests import fake_secrets
from tests.redis_support import require_redis, shared_state, unique_prefix, url_with_prefix

FIN = "ws-fin-014.contoso.local"


def _kind(path: str) -> str:
    bare = path.split("?")[0]
    if bare.endswith("/alerts"):
        return "alerts"
    return "machines" if bare == "/api/machines" else "machine"


class Process:
    """One bot process's Defender side: shared state on `url`, its own client, budget and caches."""

    def __init__(self, url: str, tenant: SimulatedTenant, *, per_minute: int = 100, processes: int = 3) -> None:
        self.shared = SharedState(url)
        self.budget = RedisRateBudget(self.shared, per_minute, 1500, processes=processes)
        self.client = DefenderClient(
            SIMULATOR_BASE_URL, StaticTokenProvider("t"), gate=self.budget, transport=SimulatorTransport(tenant)
        )
        self.cache = RedisSharedCache(self.shared, alerts_ttl=900)
        self.service = AlertService(self.client, ttl=60, max_stale=900, shared=self.cache)

    def close(self) -> None:
        self.client.close()
        self.shared.close()


@pytest.fixture
def cluster() -> Iterator[tuple[SimulatedTenant, list[Process]]]:
    """Three processes on one Redis prefix and one simulated tenant."""
    with shared_state() as state:
        tenant = SimulatedTenant()
        processes = [Process(url_with_prefix(state.prefix), tenant) for _ in range(3)]
        try:
            yield tenant, processes
        finally:
            for process in processes:
                process.close()


def calls(tenant: SimulatedTenant) -> Counter[str]:
    return Counter(_kind(path) for _, path in tenant.request_log)


# -- URLs ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "client_url", "prefix", "tls", "db"),
    [
        ("redis://127.0.0.1:6379/15", "redis://127.0.0.1:6379/15", "device-alerts", False, 15),
        ("redis://cache.internal", "redis://cache.internal/0", "device-alerts", False, 0),
        (
            "rediss://:pw@redis.example.com:6380/2?prefix=bot-a",
            "rediss://:pw@redis.example.com:6380/2",
            "bot-a",
            True,
            2,
        ),
        ("rediss://u:pw@h:1/0?ssl_cert_reqs=none", "rediss://u:pw@h:1/0?ssl_cert_reqs=none", "device-alerts", True, 0),
    ],
)
def test_redis_urls(url: str, client_url: str, prefix: str, tls: bool, db: int) -> None:
    parsed = parse_redis_url(url)
    assert (parsed.client_url, parsed.prefix, parsed.tls, parsed.db) == (client_url, prefix, tls, db)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://", "a host is required"),
        ("redis://h:99999/0", "port"),
        ("redis://h/zero", "database number"),
        ("redis://h/0?timeout=3", "unknown option"),
        ("redis://h/0?prefix=a b", "prefix"),
        ("redis://h/0#x", "fragment"),
    ],
)
def test_bad_redis_urls_are_refused_without_showing_the_password(url: str, problem: str) -> None:
    secret = fake_secrets.DEFENDER_CLIENT_SECRET.replace("~", "x")
    with_password = url.replace("redis://", f"redis://:{secret}@")
    with pytest.raises(ConfigError) as caught:
        load_settings({"BOT_STATE_URL": with_password}, dotenv_path=None)
    assert problem in str(caught.value)
    assert str(caught.value).startswith("BOT_STATE_URL: ")
    assert secret not in str(caught.value)


def test_settings_never_show_the_redis_password() -> None:
    secret = "hunter2-redis-password"
    settings = load_settings(
        {"BOT_STATE_URL": f"rediss://default:{secret}@redis.example.com:6380/0", "BOT_PROCESSES": "3"},
        dotenv_path=None,
    )
    assert settings.state_url == f"rediss://default:{secret}@redis.example.com:6380/0"  # the value works as a URL
    assert secret not in repr(settings)
    assert "rediss://default:***@redis.example.com:6380/0" in repr(settings)
    assert settings.processes == 3
    assert redact("redis://:p@[::1]:1/0") == "redis://:***@[::1]:1/0"


def test_the_default_needs_no_redis() -> None:
    settings = load_settings({}, dotenv_path=None)
    assert settings.state_url == "sqlite:///device-alerts.db"
    assert settings.processes == 1
    assert settings.simulator_url is None


# -- the budget across processes ----------------------------------------------------------------------------------


def test_one_budget_for_all_processes(cluster: tuple[SimulatedTenant, list[Process]]) -> None:
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


def test_a_429_in_one_process_stops_the_others(cluster: tuple[SimulatedTenant, list[Process]]) -> None:
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
    cluster: tuple[SimulatedTenant, list[Process]],
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


def test_concurrent_lookups_in_three_processes_make_one_call(cluster: tuple[SimulatedTenant, list[Process]]) -> None:
    tenant, processes = cluster
    mid = next(m["id"] for m in tenant.machines if m["computerDnsName"] == FIN)
    processes[0].service.device_alerts(mid)  # details cached; the alert list is what the storm is about
    tenant.latency = 0.3
    for process in processes:  # force a fetch: no fresh list anywhere
        process.service._alerts.clear()
    process_cache = processes[0].shared
    process_cache.client.delete(process_cache.key("alerts", mid))
    before = calls(tenant)["alerts"]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda n: processes[n % 3].service.device_alerts(mid), range(12)))
    assert calls(tenant)["alerts"] - before == 1
    assert len({r.fetched_at for r in results}) == 1


def test_a_dead_lock_holder_does_not_wedge_the_others(cluster: tuple[SimulatedTenant, list[Process]]) -> None:
    tenant, (one, _, _) = cluster
    mid = next(m["id"] for m in tenant.machines if m["computerDnsName"] == FIN)
    one.service.device_alerts(mid)
    one.service._alerts.clear()
    one.shared.client.delete(one.shared.key("alerts", mid))
    # A process took the lock for this device and died: its lock expires (here in 0.4 s), nobody waits longer.
    one.shared.client.set(one.shared.key("flight", f"alerts:{mid}"), "dead-process", px=400)
    started = time.monotonic()
    result = one.service.device_alerts(mid)
    waited = time.monotonic() - started
    assert 0.3 < waited < 2.0
    assert result.alerts


def test_alert_lists_are_stored_compactly(cluster: tuple[SimulatedTenant, list[Process]]) -> None:
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


def test_a_payload_from_other_code_is_a_miss(cluster: tuple[SimulatedTenant, list[Process]]) -> None:
    tenant, (one, two, _) = cluster
    mid = next(m["id"] for m in tenant.machines if m["computerDnsName"] == FIN)
    one.shared.client.set(one.shared.key("alerts", mid), b"not what this code writes")
    assert two.cache.get_alerts(mid) is None
    two.service.device_alerts(mid)
    assert calls(tenant)["alerts"] == 1


def test_when_the_flight_holder_fails_a_waiter_calls_itself() -> None:
    with shared_state() as state:
        other = SharedState(url_with_prefix(state.prefix))
        try:
            first, second = ClusterFlight(state), ClusterFlight(other)
            results: dict[str, object] = {}
            holder_in = threading.Event()

            def failing() -> str:
                holder_in.set()
                time.sleep(0.3)
                raise RuntimeError("Defender failed for the holder")

            def run_holder() -> None:
                try:
                    first.run("k", failing, lambda: None)
                except RuntimeError as exc:
                    results["holder"] = exc

            thread = threading.Thread(target=run_holder)
            thread.start()
            assert holder_in.wait(5)
            started = time.monotonic()
            value, shared = second.run("k", lambda: "fetched by the waiter", lambda: None)
            thread.join()
            assert (value, shared) == ("fetched by the waiter", False)
            assert 0.1 < time.monotonic() - started < 2.0  # it waited for the holder, then went itself
            assert isinstance(results["holder"], RuntimeError)
            # A result that landed while the lock was free is taken, not fetched again.
            assert second.run("k", lambda: "fetched again", lambda: "landed") == ("landed", True)
            assert state.client.exists(state.key("flight", "k")) == 0  # released
        finally:
            other.close()


# -- event dedupe ---------------------------------------------------------------------------------------------------


def test_a_retried_event_is_handled_by_one_process_only() -> None:
    with shared_state() as state:
        other = SharedState(url_with_prefix(state.prefix))
        try:
            one, two = RedisEventDeduper(state), RedisEventDeduper(other)
            assert one.first_time("Ev01") is True
            assert two.first_time("Ev01") is False  # Slack's retry landed on another process
            assert one.first_time("Ev01") is False
            assert two.first_time("Ev02") is True
            assert 3590 < state.client.ttl(state.key("event", "Ev01")) <= 3600
        finally:
            other.close()


# -- per-person limits ---------------------------------------------------------------------------------------------


def test_a_persons_allowance_is_shared_by_every_process() -> None:
    with shared_state() as state:
        other = SharedState(url_with_prefix(state.prefix))
        try:
            limiters = [RedisRequestLimiter(s, user_per_minute=5, channel_per_minute=8) for s in (state, other, state)]
            outcomes = [limiters[n % 3].admit("T1", "C1", "U1") for n in range(7)]
            assert outcomes[:5] == [None] * 5  # a minute's worth at once, wherever the requests land
            refused = outcomes[5]
            assert refused is not None
            assert (refused.scope, refused.per_minute) == ("you", 5)
            assert 11 < refused.retry_after <= 12  # one token refills in 60 / 5 s
            for person in ("U2", "U3", "U4"):  # other people in the same channel: 6, 7 and 8 of 8
                assert limiters[1].admit("T1", "C1", person) is None
            slowed = limiters[2].admit("T1", "C1", "U5")
            assert slowed is not None
            assert slowed.scope == "this channel"
            assert RedisRequestLimiter(state, user_per_minute=0, channel_per_minute=0).admit("T1", "C1", "U1") is None
        finally:
            other.close()


# -- without Redis --------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def private_redis(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of this test's own on `port` (no persistence), stopped afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        require_redis()  # fails in CI when there is no Redis at all; otherwise the reason is the binary
        pytest.skip("needs the redis-server binary to stop and restart a server")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_without_redis_lookups_work_on_a_local_share_of_the_budget_and_reconcile_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0?prefix={unique_prefix()}"
    tenant = SimulatedTenant()
    mid = next(m["id"] for m in tenant.machines if m["computerDnsName"] == FIN)
    with private_redis(port):
        process = Process(url, tenant, per_minute=30, processes=3)
        process.service.device_alerts(mid)
    try:
        # Redis is gone (stopped, its data with it).
        caplog.set_level(logging.INFO)
        started = time.monotonic()
        cached = process.service.device_alerts(mid)  # from the process's own cache
        assert cached.from_cache
        budget = process.budget
        made, refused = 0, 0
        for _ in range(30):
            try:
                budget.acquire(Api.MACHINE)
                made += 1
            except BudgetExhausted:
                refused += 1
        took = time.monotonic() - started
        assert (made, refused) == (10, 20)  # 1/3 of 30 per minute while Redis is away
        assert took < 2.0  # one short timeout, then the back-off answers at once
        assert budget.usage(Api.MACHINE).used_last_minute == 10
        unavailable = [r for r in caplog.records if "is unavailable" in r.getMessage()]
        assert len(unavailable) == 1  # said once, clearly, not per call
        assert "using process-local state" in unavailable[0].getMessage()
        with pytest.raises(SharedStateDown):
            RedisWatchStore(process.shared).live_watches()  # watches need Redis: they say so rather than guess

        with private_redis(port):  # Redis is back, empty
            process.shared._down_until = 0.0  # do not wait out the back-off in a test
            assert process.shared.ping()
            assert any("is back" in r.getMessage() for r in caplog.records)
            # The 10 calls made on the local share are now in the shared window: other processes count them.
            other = Process(url, tenant, per_minute=30)
            try:
                assert other.budget.usage(Api.MACHINE).used_last_minute == 10
                assert budget.usage(Api.MACHINE).used_last_minute == 10
                assert other.service.device_alerts(mid).alerts  # and lookups share again
                assert process.shared.available
            finally:
                other.close()
    finally:
        process.close()


def test_a_dead_redis_does_not_slow_acknowledgements() -> None:
    url = f"redis://127.0.0.1:{_free_port()}/0"  # nothing listens there
    state = SharedState(url)
    deduper = RedisEventDeduper(state)
    try:
        started = time.monotonic()
        assert deduper.first_time("Ev1") is True
        assert deduper.first_time("Ev1") is False  # the local memory still drops retries to this process
        results = [deduper.first_time(f"Ev{n}") for n in range(2, 200)]
        assert all(results)
        assert time.monotonic() - started < 1.5
        assert state.failures == 1
    finally:
        state.close()


def test_state_is_logged_without_its_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    state = SharedState(f"redis://:hunter2-pw@127.0.0.1:{_free_port()}/0")
    try:
        assert state.ping() is False
    finally:
        state.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "redis://:***@127.0.0.1" in text
    assert "hunter2" not in text


def test_health_says_where_shared_state_lives() -> None:
    require_redis()
    from bot.runtime import build_runtime

    prefix = unique_prefix()
    runtime = build_runtime(load_settings({"BOT_STATE_URL": url_with_prefix(prefix)}, dotenv_path=None))
    try:
        assert runtime.state.shared is not None
        assert isinstance(runtime.budget, RedisRateBudget)
        assert runtime.state.status() == "redis"
    finally:
        runtime.close()
    local = build_runtime(load_settings({"BOT_STATE_URL": "sqlite:///:memory:"}, dotenv_path=None))
    try:
        assert local.state.shared is None
        assert local.state.status() == "local"
    finally:
        local.close()


def test_a_bot_started_without_its_redis_answers_lookups_from_a_local_share() -> None:
    from tests.slack_support import harness

    dead = f"redis://127.0.0.1:{_free_port()}/0"
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
    """`watches` runs inside the acknowledgement: with the store down it still answers, with a reference."""
    from tests.slack_support import ack_json, harness

    dead = f"redis://127.0.0.1:{_free_port()}/0"
    for rig in harness(state_url=dead, env={"BOT_AUDIT_LOG": "off"}):
        ack = ack_json(rig.command("watches"))
        assert str(ack["text"]).startswith("Something went wrong on the bot's side (reference ")


def test_an_unreachable_test_redis_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import redis_support

    monkeypatch.setattr(redis_support, "REDIS_URL", f"redis://127.0.0.1:{_free_port()}/15")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI needs the Redis backend's tests to run"):
        redis_support.require_redis()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=r"no Redis at redis://127\.0\.0\.1"):
        redis_support.require_redis()
