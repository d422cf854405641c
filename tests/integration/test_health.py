"""`/healthz` says "degraded", and why, when a configured dependency is down (still HTTP 200: see `SlackBot.health`)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.runtime import SlackBot
from bot.state.sqlite import PROBE_INTERVAL, SqliteWatchStore
from tests.doubles.processes import free_port
from tests.doubles.slack import all_text, harness
from tests.doubles.sqlite import fill_to_the_brim


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def status(bot: SlackBot) -> tuple[str, list[str]]:
    health: dict[str, Any] = bot.health()
    return health["status"], health["problems"]


def test_a_healthy_bot_says_ok_with_no_problems(tmp_path: Path) -> None:
    for rig in harness(state_url=f"sqlite:///{tmp_path}/state.db", env={"BOT_AUDIT_LOG": "off"}):
        assert status(rig.bot) == ("ok", [])


def test_a_failing_watch_store_makes_the_bot_degraded_until_it_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for rig in harness(state_url=f"sqlite:///{tmp_path}/state.db", env={"BOT_AUDIT_LOG": "off"}):

        def full(*args: object, **kwargs: object) -> bool:
            raise sqlite3.OperationalError("database or disk is full")

        bot = rig.bot
        monkeypatch.setattr(bot.store, "try_lease", full)
        bot.start_background()
        wait_for(lambda: status(bot) == ("degraded", ["watch-store-failing"]))  # noqa: B023 - waited for here
        monkeypatch.undo()
        bot.poller.deliver_soon()
        wait_for(lambda: status(bot) == ("ok", []))  # noqa: B023


def test_an_unreachable_redis_makes_the_bot_degraded() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    for rig in harness(state_url=dead, env={"BOT_AUDIT_LOG": "off"}):
        health = rig.bot.health()
        assert (health["status"], health["problems"]) == ("degraded", ["shared-state-unavailable"])
        assert health["shared_state"] == "redis-unavailable"


def test_a_full_disk_makes_the_bot_degraded_and_a_watch_says_it_cannot_be_saved(tmp_path: Path) -> None:
    """Before, a full SQLite file left /healthz at "ok" (the lease renews in place) and `watch` answered "Something
    went wrong". The stand-in for the full disk is SQLite's page limit on the store's own connection."""
    for rig in harness(state_url=f"sqlite:///{tmp_path}/state.db", env={"BOT_AUDIT_LOG": "off"}):
        bot = rig.bot
        assert status(bot) == ("ok", [])
        assert isinstance(bot.store, SqliteWatchStore)
        fill_to_the_brim(bot.store)
        bot.store._probed_at -= PROBE_INTERVAL  # the next /healthz probes at once, not in 5 s
        health = bot.health()
        assert (health["status"], health["problems"]) == ("degraded", ["watch-store-failing"])
        assert health["watches"]["problem"] == "its database is full"

        rig.command("watch ws-fin-014", "w1")
        [answer] = rig.standin.wait_for_posts(1)
        assert answer.payload["text"] == (
            "The bot cannot save watches right now: its database is full. Lookups still work."
        )
        assert bot.store.live_watches() == []
        rig.command("ws-fin-014", "r1")  # lookups still work
        assert "ws-fin-014" in all_text(rig.standin.wait_for_posts(2)[1].payload)
