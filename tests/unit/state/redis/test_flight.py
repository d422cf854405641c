"""Single flight across processes (`ClusterFlight`): a waiter waits for the lock holder, and calls itself
when the holder fails."""

from __future__ import annotations

import threading
import time

from bot.state.redis.connection import RedisConnection
from bot.state.redis.flight import ClusterFlight
from tests.doubles.redis import shared_state, url_with_prefix


def test_when_the_flight_holder_fails_a_waiter_calls_itself() -> None:
    with shared_state() as state:
        other = RedisConnection(url_with_prefix(state.prefix))
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


def test_a_holder_that_works_longer_than_the_lock_ttl_keeps_its_lock() -> None:
    """The holder renews its short lock while its call runs: a waiter does not call Defender a second time."""
    with shared_state() as state:
        other = RedisConnection(url_with_prefix(state.prefix))
        try:
            first, second = ClusterFlight(state, lock_ttl=0.3), ClusterFlight(other, lock_ttl=0.3)
            calls: list[str] = []
            landed: list[str] = []
            holder_in = threading.Event()

            def slow() -> str:
                holder_in.set()
                calls.append("holder")
                time.sleep(1.0)  # more than three lock lifetimes
                landed.append("result")
                return "result"

            thread = threading.Thread(target=lambda: first.run("k", slow, lambda: None))
            thread.start()
            assert holder_in.wait(5)
            value = second.run("k", lambda: calls.append("waiter") or "again", lambda: landed[0] if landed else None)
            thread.join()
            assert value == ("result", True)
            assert calls == ["holder"]
        finally:
            other.close()


def test_a_dead_holders_lock_lapses_within_the_lock_ttl_and_a_waiter_takes_over() -> None:
    """A holder killed mid-call (kill -9) renews nothing: its lock is gone within `lock_ttl`, then a waiter calls."""
    with shared_state() as state:
        lock = state.key("flight", "k")
        state.client.set(lock, "token-of-a-dead-process", px=300)  # what a holder leaves when it dies
        flight = ClusterFlight(state, lock_ttl=0.3)
        assert flight.run("k", lambda: "fetched by the waiter", lambda: None) == ("fetched by the waiter", False)
        assert state.client.exists(lock) == 0
