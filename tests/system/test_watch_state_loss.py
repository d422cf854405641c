"""Watches when Redis loses its data: FLUSHDB, or a restart without persistence, on a `redis-server` of the test's
own (never the shared test Redis). The poller notices (`WatchStore.lost_data`), restores the watches it checked,
says so in each thread and in the log, and `/healthz` reports `watch-state-lost`."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import pytest
import redis

from bot.demo.clock import FakeClock
from bot.demo.standin import SlackStandIn
from bot.state.redis.connection import MAX_BACKOFF, RedisConnection, RedisUnavailable
from bot.state.redis.watches import RedisWatchStore
from bot.state.watches import Watch
from tests.doubles.processes import free_port
from tests.doubles.redis import private_redis, unique_prefix
from tests.doubles.slack import close_soon, make_bot
from tests.doubles.watch import FIN_014, FIN_015, Rig

STATUSES = ("InProgress", "New") * 3 + ("Resolved",)  # seven updates of each of two alerts: 14 changes


def thread_texts(rig: Rig, watch: Watch) -> list[str]:
    """The `text` of each follow-up in the watch's thread, in order."""
    return [p.payload["text"] for p in rig.followups() if p.payload.get("thread_ts") == watch.root_ts]


@pytest.mark.parametrize("fault", ["flushdb", "restart"])
def test_watches_lost_by_redis_are_restored_and_every_later_change_is_posted_once(
    tmp_path: Path, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    clock = FakeClock()  # the connection's back-off after the restart counts in it
    with contextlib.ExitStack() as servers, contextlib.ExitStack() as bot:
        servers.enter_context(private_redis(port))
        shared = RedisConnection(f"redis://127.0.0.1:{port}/0?prefix={unique_prefix()}", clock=clock)
        rig = Rig.build(tmp_path / "unused.db", clock=clock, store=RedisWatchStore(shared))
        bot.callback(shared.close)
        bot.callback(close_soon, rig.standin)
        bot.callback(rig.close)
        fin14, fin15 = rig.watch("ws-fin-014"), rig.watch("ws-fin-015")
        first, second = rig.add_alert(FIN_014), rig.add_alert(FIN_015)
        assert rig.check().posted == 2

        if fault == "flushdb":
            redis.Redis(port=port).flushdb()
        else:
            servers.close()  # stopped, its data with it
            with pytest.raises(RedisUnavailable):
                rig.check()
            servers.enter_context(private_redis(port))  # back, empty
            clock.advance(MAX_BACKOFF)
        caplog.set_level(logging.WARNING)
        for status in STATUSES:
            rig.tenant.set_alert_status(first, status)
            rig.tenant.set_alert_status(second, status)
            rig.check()

        for watch, device in ((fin14, FIN_014), (fin15, FIN_015)):
            # The new alert, then the note, then one reply for each of the seven updates: each once.
            assert thread_texts(rig, watch) == [f"{device}: 1 change", f"{device}: watch restored"] + [
                f"{device}: 1 change"
            ] * len(STATUSES)
        [note] = [p for p in rig.followups() if p.payload["text"] == f"{FIN_014}: watch restored"]
        assert "shared watch state was lost" in note.payload["blocks"][0]["text"]["text"]
        assert [(w.device_name, w.root_ts) for w in rig.store.live_watches()] == [
            (FIN_014, fin14.root_ts),
            (FIN_015, fin15.root_ts),
        ]
        assert rig.check().pending == 0
        lost = [r.getMessage() for r in caplog.records if "lost its data" in r.getMessage()]
        assert len(lost) == 1 and "restored 2 watch(es)" in lost[0]


def test_healthz_reports_that_the_watch_state_was_lost() -> None:
    port = free_port()
    with private_redis(port), SlackStandIn() as standin:
        bot = make_bot(standin, state_url=f"redis://127.0.0.1:{port}/0?prefix={unique_prefix()}")
        try:
            bot.poller.run_once()
            assert bot.health()["status"] == "ok"
            redis.Redis(port=port).flushdb()
            bot.poller.run_once()
            health = bot.health()
            assert (health["status"], health["problems"]) == ("degraded", ["watch-state-lost"])
            assert health["watches"]["state_lost"].endswith("UTC; 0 restored")
        finally:
            bot.close()


def test_the_process_that_remembers_restores_even_when_another_takes_the_lease_first(tmp_path: Path) -> None:
    port = free_port()
    clock = FakeClock()
    url = f"redis://127.0.0.1:{port}/0?prefix={unique_prefix()}"
    with private_redis(port), contextlib.ExitStack() as bot:
        connections = [RedisConnection(url, clock=clock) for _ in range(2)]
        for connection in connections:
            bot.callback(connection.close)
        holder = Rig.build(tmp_path / "one.db", clock=clock, store=RedisWatchStore(connections[0]))
        other = Rig.build(
            tmp_path / "two.db",
            clock=clock,
            tenant=holder.tenant,
            standin=holder.standin,
            holder="process-2",
            store=RedisWatchStore(connections[1]),
        )
        bot.callback(close_soon, holder.standin)
        bot.callback(holder.close)
        bot.callback(other.close)
        watch = holder.watch("ws-fin-014")
        alert = holder.add_alert(FIN_014)
        assert holder.check().posted == 1
        assert other.check().ran is False  # the first process holds the lease and checks

        redis.Redis(port=port).flushdb()  # the lease goes with everything else
        assert other.check(0).ran is True  # the other process takes the lease first: it knows no watch
        assert holder.check(0).ran is False  # the first one restores what it checked, then polls no more
        for status in STATUSES:
            holder.tenant.set_alert_status(alert, status)
            other.check()
        assert thread_texts(other, watch) == [f"{FIN_014}: 1 change", f"{FIN_014}: watch restored"] + [
            f"{FIN_014}: 1 change"
        ] * len(STATUSES)


def test_a_watch_started_again_before_the_loss_is_noticed_is_left_as_it_is(tmp_path: Path) -> None:
    port = free_port()
    clock = FakeClock()
    with private_redis(port), contextlib.ExitStack() as bot:
        shared = RedisConnection(f"redis://127.0.0.1:{port}/0?prefix={unique_prefix()}", clock=clock)
        rig = Rig.build(tmp_path / "unused.db", clock=clock, store=RedisWatchStore(shared))
        bot.callback(shared.close)
        bot.callback(close_soon, rig.standin)
        bot.callback(rig.close)
        old = rig.watch("ws-fin-014")
        rig.check()
        redis.Redis(port=port).flushdb()
        again = rig.watch("ws-fin-014")  # someone saw `watches` say none, and started it again: a new card
        assert again.root_ts != old.root_ts
        rig.check()
        assert [w.root_ts for w in rig.store.live_watches()] == [again.root_ts]
        assert not any("restored" in p.payload["text"] for p in rig.followups())
