"""Test helpers shared by several test modules."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from bot.slack.actions import ButtonSeal

T = TypeVar("T")
START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
# The seal for cards rendered outside a bot (a bot seals with its own signing secret).
TEST_SEAL = ButtonSeal(bytes(range(32)))


class FakeClock:
    """A manual clock: `clock()` gives monotonic seconds, `clock.wall()` the matching UTC datetime."""

    def __init__(self, start: float = 1000.0) -> None:
        self._lock = threading.Lock()
        self._start = start
        self.now = start

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    def wall(self) -> datetime:
        return START + timedelta(seconds=self() - self._start)

    # Lets the clock stand in for `time.sleep`: sleeping advances time instead of waiting.
    def sleep(self, seconds: float) -> None:
        self.advance(seconds)


def machine_id(n: int) -> str:
    """A distinct, valid 40-hex machine id per integer."""
    return f"{n:040x}"


def run_concurrently(count: int, work: Callable[[], T]) -> list[T | BaseException]:
    """Start `count` threads that call `work` at the same moment; return each result or exception."""
    start = threading.Barrier(count)
    outcomes: list[T | BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        start.wait()
        try:
            outcome: T | BaseException = work()
        except BaseException as exc:  # the caller asserts on what was raised
            outcome = exc
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """Ask each still-running process to stop (SIGTERM), then kill any that has not within 5 s."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
