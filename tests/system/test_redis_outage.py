"""Life without Redis: a bot process whose Redis goes away and comes back (a `redis-server` of the test's own,
stopped and started again) keeps answering on a local share of the budget, then reconciles."""

from __future__ import annotations

import logging
import time

import pytest

from bot.defender.limits import Api, BudgetExhausted
from bot.defender.simulator import SimulatedTenant
from bot.demo.clock import FakeClock
from bot.state.redis.connection import MAX_BACKOFF, RedisUnavailable
from bot.state.redis.watches import RedisWatchStore
from tests.doubles.processes import free_port
from tests.doubles.redis import RedisProcess, private_redis, unique_prefix

FIN = "ws-fin-014.contoso.local"


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
        with pytest.raises(RedisUnavailable):
            RedisWatchStore(process.shared).live_watches()  # watches need Redis: they say so rather than guess

        with private_redis(port):  # Redis is back, empty
            clock.advance(MAX_BACKOFF)  # do not wait out the back-off in a test
            assert process.shared.ping()
            assert any("is back" in r.getMessage() for r in caplog.records)
            # The 10 calls made on the local share are now in the shared window: other processes count them.
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
