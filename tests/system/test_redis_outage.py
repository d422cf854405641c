"""Life without Redis: a bot process whose Redis goes away and comes back (a `redis-server` of the test's own,
stopped and started again) keeps answering on a local share of the budget, then reconciles."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.defender.limits import Api, BudgetExhausted
from bot.defender.simulator import SimulatedTenant
from bot.demo.clock import FakeClock
from bot.slack.listeners import WATCHES_UNAVAILABLE
from bot.state.redis.budget import RedisRateBudget
from bot.state.redis.connection import FIRST_BACKOFF, MAX_BACKOFF, RedisConnection, RedisUnavailable
from bot.state.redis.watches import RedisWatchStore
from tests.doubles.concurrency import run_concurrently
from tests.doubles.processes import free_port
from tests.doubles.redis import RedisProcess, private_redis, unique_prefix
from tests.doubles.slack import harness, header

FIN = "ws-fin-014.contoso.local"


def count_connections(shared: RedisConnection) -> list[int]:
    """How many times `shared` takes a connection from its pool (every command, pipeline or script that is sent
    to Redis takes one): a one-item list the test reads as it goes."""
    pool = shared.client.connection_pool
    taken, get_connection = [0], pool.get_connection

    def counted(*args: Any, **kwargs: Any) -> Any:
        taken[0] += 1
        return get_connection(*args, **kwargs)

    pool.get_connection = counted  # type: ignore[method-assign]
    return taken


def test_without_redis_lookups_work_on_a_local_share_of_the_budget_and_reconcile_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    clock = FakeClock()  # the connection's back-off counts in it
    url = f"redis://127.0.0.1:{port}/0?prefix={unique_prefix()}"
    tenant = SimulatedTenant()
    mid = next(m["id"] for m in tenant.machines if m["computerDnsName"] == FIN)
    with private_redis(port):
        process = RedisProcess(url, tenant, per_minute=30, processes=3, clock=clock)
        process.service.device_alerts(mid)
    try:
        # Redis is gone (stopped, its data with it).
        caplog.set_level(logging.INFO)
        attempts = count_connections(process.shared)
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
        # 1/3 of 30 per minute while Redis is away, less 1/3 (rounded up) of the one call seen before it went
        assert (made, refused) == (9, 21)
        # One attempt reached for the dead server (one short timeout); then the back-off answered every call at once.
        assert attempts == [1]
        assert (process.shared.failures, process.shared.backoff) == (1, FIRST_BACKOFF)
        assert budget.usage(Api.MACHINE).used_last_minute == 10
        unavailable = [r for r in caplog.records if "is unavailable" in r.getMessage()]
        assert len(unavailable) == 1  # said once, clearly, not per call
        assert "using process-local state" in unavailable[0].getMessage()
        with pytest.raises(RedisUnavailable):
            RedisWatchStore(process.shared).live_watches()  # watches need Redis: they say so rather than guess

        with private_redis(port):  # Redis is back, empty
            clock.advance(MAX_BACKOFF)  # do not wait out the back-off in a test
            assert process.shared.ping()
            assert any("is back" in r.getMessage() for r in caplog.records)
            # The 9 calls made on the local share are now in the shared window, and the one made before the
            # restart (which lost it) is put back: other processes count all 10.
            other = RedisProcess(url, tenant, per_minute=30)
            try:
                assert other.budget.usage(Api.MACHINE).used_last_minute == 10
                assert budget.usage(Api.MACHINE).used_last_minute == 10
                assert other.service.device_alerts(mid).alerts  # and lookups share again
                assert process.shared.available
            finally:
                other.close()
    finally:
        process.close()


def own_redis_url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0?prefix={unique_prefix()}"


def test_an_outage_and_a_restart_do_not_let_the_processes_spend_the_minute_twice() -> None:
    """Three processes spent the minute's 30 calls; Redis goes away, then comes back empty. Before the fix each
    started its local share (10) empty (the minute saw 60 calls), and the restarted Redis had forgotten the 30."""
    port = free_port()
    clock = FakeClock()  # the budget's windows and the back-off count in it
    url = own_redis_url(port)
    shared = [RedisConnection(url, clock=clock) for _ in range(3)]
    budgets = [RedisRateBudget(s, 30, 1500, processes=3, clock=clock) for s in shared]
    try:
        with private_redis(port):
            for turn in range(30):
                budgets[turn % 3].acquire(Api.MACHINE)
            for budget in budgets:  # each sees the window full before Redis goes
                assert admitted(budget, 1) == 0
        assert [admitted(budget, 30) for budget in budgets] == [0, 0, 0]  # on local shares: the minute is spent
        with private_redis(port):  # back, empty
            clock.advance(MAX_BACKOFF)  # still the same minute
            assert all(connection.ping() for connection in shared)
            assert [admitted(budget, 30) for budget in budgets] == [0, 0, 0]  # the restart forgot nothing
            clock.advance(31)  # the calls before the outage leave the window
            assert sum(admitted(budget, 30) for budget in budgets) == 30  # one cap for all, shared again
    finally:
        for connection in shared:
            connection.close()


def admitted(budget: RedisRateBudget, attempts: int) -> int:
    made = 0
    for _ in range(attempts):
        try:
            budget.acquire(Api.MACHINE)
            made += 1
        except BudgetExhausted:
            pass
    return made


def test_a_stall_lengthens_the_back_off_once_per_failed_probe_not_once_per_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis stalls (SIGSTOP) under eight concurrent calls. Before the fix each timed-out call doubled the back-off,
    so one stall left the process on local state for 30 s; now the stall is one outage with a 1 s back-off, one
    probe at a time doubles it, and the first probe after the stall brings Redis back."""
    port = free_port()
    clock = FakeClock()  # the back-off counts in it
    with private_redis(port) as server:
        shared = RedisConnection(own_redis_url(port), clock=clock)
        recovered: list[bool] = []
        shared.on_recover(lambda: recovered.append(True))
        try:
            assert shared.ping()
            server.send_signal(signal.SIGSTOP)
            try:
                touched = AtomicCount()
                in_flight = threading.Barrier(8)  # all eight are under way before the first times out
                outcomes = run_concurrently(8, lambda: calls_redis(shared, touched, in_flight))
                assert outcomes == [False] * 8 and touched.value == 8  # each waited one short timeout
                assert (shared.backoff, shared.failures) == (FIRST_BACKOFF, 1)  # one outage, not eight
                assert run_concurrently(8, lambda: calls_redis(shared, touched)) == [False] * 8
                assert touched.value == 8  # within the back-off nothing touches the network

                clock.advance(FIRST_BACKOFF)
                assert run_concurrently(8, lambda: calls_redis(shared, touched)) == [False] * 8
                assert touched.value == 9  # one probe; the others failed at once
                assert shared.backoff == 2 * FIRST_BACKOFF
            finally:
                server.send_signal(signal.SIGCONT)
            clock.advance(2 * FIRST_BACKOFF)
            assert calls_redis(shared, touched)  # the probe finds Redis back
            assert shared.available and shared.backoff == 0 and recovered == [True]
            assert len([r for r in caplog.records if "is unavailable" in r.getMessage()]) == 1
        finally:
            shared.close()


class AtomicCount:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


def calls_redis(shared: RedisConnection, touched: AtomicCount, together: threading.Barrier | None = None) -> bool:
    """One Redis call through the connection; False when it says Redis is unavailable."""

    def ping(client: redis.Redis) -> bool:
        touched.add()
        if together is not None:
            together.wait(timeout=10)
        return bool(client.ping())

    try:
        return shared.run(ping)
    except RedisUnavailable:
        return False


def test_without_redis_watch_unwatch_and_watches_say_watches_are_unavailable_and_lookups_still_work(
    tmp_path: Path,
) -> None:
    """Watches live in Redis: while it is unreachable `watch`, `unwatch` and `watches` say so (before: "Something
    went wrong on the bot's side"), the audit trail has a fixed reason, and lookups are answered."""
    port = free_port()
    trail = tmp_path / "audit.jsonl"
    with contextlib.ExitStack() as server:
        server.enter_context(private_redis(port))
        url = f"redis://127.0.0.1:{port}/0?prefix={unique_prefix()}"
        for rig in harness(state_url=url, env={"BOT_AUDIT_LOG": str(trail)}):
            server.close()  # Redis stops
            rig.command("watch ws-fin-014", "w1")
            rig.command("unwatch ws-fin-014", "u1")
            listing = rig.command("watches", "l1")
            rig.command("ws-fin-014", "r1")
            answers = {p.target: p for p in rig.standin.wait_for_posts(3)}
            rig.wait_idle()
            for told in (
                answers["w1"].payload["text"],
                answers["u1"].payload["text"],
                json.loads(listing.body)["text"],
            ):
                assert told == WATCHES_UNAVAILABLE
            assert header(answers["r1"]).startswith(f"{FIN} · ")  # lookups still work
    records = [json.loads(line) for line in trail.read_text().splitlines()]
    reasons = {(r["audit"], r["result"], r["reason"]) for r in records}
    assert {("watch_start", "error", "shared_state_unavailable"), ("watch_stop", "error", "shared_state_unavailable"),
            ("watch_list", "error", "shared_state_unavailable")} <= reasons  # fmt: skip
