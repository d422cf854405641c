"""Event dedupe across processes (`RedisEventDeduper`): a retried event is handled once, and a dead Redis
does not slow acknowledgements."""

from __future__ import annotations

import time

from bot.state.redis.connection import RedisConnection
from bot.state.redis.dedupe import RedisEventDeduper
from tests.doubles.processes import free_port
from tests.doubles.redis import shared_state, url_with_prefix

# -- event dedupe ---------------------------------------------------------------------------------------------------


def test_a_retried_event_is_handled_by_one_process_only() -> None:
    with shared_state() as state:
        other = RedisConnection(url_with_prefix(state.prefix))
        try:
            one, two = RedisEventDeduper(state), RedisEventDeduper(other)
            assert one.first_time("Ev01") is True
            assert two.first_time("Ev01") is False  # Slack's retry landed on another process
            assert one.first_time("Ev01") is False
            assert two.first_time("Ev02") is True
            assert 3590 < state.client.ttl(state.key("event", "Ev01")) <= 3600
        finally:
            other.close()


def test_a_dead_redis_does_not_slow_acknowledgements() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    state = RedisConnection(url)
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
