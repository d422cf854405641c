"""`/healthz` says "degraded", and why, when a configured dependency is down (still HTTP 200: see `SlackBot.health`)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.runtime import SlackBot
from tests.doubles.processes import free_port
from tests.doubles.slack import harness


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
