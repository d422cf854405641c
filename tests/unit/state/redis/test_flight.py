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
