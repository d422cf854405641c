"""Many threads at the same moment: how tests prove that concurrent callers share one call, one winner, one row."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


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
