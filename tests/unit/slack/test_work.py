"""The bounded work pool: runs jobs off the acknowledging thread and refuses at once when saturated."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from bot.slack.work import WorkPool

WAIT = 5.0


def wait_for(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


class Gate:
    """Jobs that block until released, counting how many started and finished."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.started = 0
        self.finished = 0

    def job(self) -> None:
        with self._lock:
            self.started += 1
        self.release.wait(WAIT)
        with self._lock:
            self.finished += 1


@pytest.fixture
def pools() -> Iterator[list[WorkPool]]:
    made: list[WorkPool] = []
    yield made
    for pool in made:
        pool.shutdown(wait=False)


def make(pools: list[WorkPool], workers: int, max_pending: int) -> WorkPool:
    pool = WorkPool(workers, max_pending)
    pools.append(pool)
    return pool


def test_runs_submitted_jobs_on_worker_threads(pools: list[WorkPool]) -> None:
    pool = make(pools, 2, 8)
    done = threading.Semaphore(0)
    ran: list[tuple[int, str]] = []
    lock = threading.Lock()

    def job(n: int) -> Callable[[], None]:
        def run() -> None:
            with lock:
                ran.append((n, threading.current_thread().name))
            done.release()

        return run

    assert all(pool.submit(job(n)) for n in range(10))
    for _ in range(10):
        assert done.acquire(timeout=WAIT)
    assert sorted(n for n, _ in ran) == list(range(10))
    assert all(name.startswith("lookup") for _, name in ran)
    assert threading.current_thread().name not in {name for _, name in ran}
    assert wait_for(lambda: pool.in_use == 0)


def test_capacity_is_workers_plus_pending(pools: list[WorkPool]) -> None:
    assert make(pools, 2, 3).capacity == 5
    assert make(pools, 4, 0).capacity == 4
    assert make(pools, 1, 20).capacity == 21


def test_refuses_when_saturated_and_accepts_again_after(pools: list[WorkPool]) -> None:
    pool = make(pools, 2, 3)
    gate = Gate()
    assert pool.in_use == 0
    for n in range(5):
        assert pool.submit(gate.job) is True
        assert pool.in_use == n + 1
    assert wait_for(lambda: gate.started == 2)  # two running, three waiting
    refused = threading.Event()
    assert pool.submit(refused.set) is False
    assert pool.submit(refused.set) is False
    assert pool.in_use == 5
    time.sleep(0.05)
    assert gate.started == 2  # the waiting jobs wait; nothing extra started
    gate.release.set()
    assert wait_for(lambda: pool.in_use == 0)
    assert gate.finished == 5
    assert not refused.is_set()  # refused jobs were dropped, not queued
    ran = threading.Event()
    assert pool.submit(ran.set) is True
    assert ran.wait(WAIT)
    assert wait_for(lambda: pool.in_use == 0)


def test_a_finished_job_frees_exactly_one_slot(pools: list[WorkPool]) -> None:
    pool = make(pools, 1, 1)
    first, second = threading.Event(), threading.Event()
    assert pool.submit(lambda: first.wait(WAIT)) is True
    assert pool.submit(lambda: second.wait(WAIT)) is True
    assert pool.submit(lambda: None) is False
    first.set()
    assert wait_for(lambda: pool.in_use == 1)
    third = Gate()
    assert pool.submit(third.job) is True
    assert pool.submit(third.job) is False
    second.set()
    third.release.set()
    assert wait_for(lambda: pool.in_use == 0)
    assert third.finished == 1


def test_a_failing_job_is_logged_and_frees_its_slot(pools: list[WorkPool], caplog: pytest.LogCaptureFixture) -> None:
    pool = make(pools, 1, 1)

    def boom() -> None:
        raise RuntimeError("lookup exploded")

    with caplog.at_level(logging.ERROR, logger="bot.slack.work"):
        for _ in range(6):  # more failures than the pool has slots
            assert wait_for(lambda: pool.in_use == 0)
            assert pool.submit(boom) is True
        assert wait_for(lambda: pool.in_use == 0)
    failures = [r for r in caplog.records if r.name == "bot.slack.work"]
    assert len(failures) == 6
    assert all(r.getMessage() == "background job failed" for r in failures)
    assert all(r.levelno == logging.ERROR for r in failures)
    assert all(r.exc_info is not None and isinstance(r.exc_info[1], RuntimeError) for r in failures)
    assert str(failures[0].exc_info[1]) == "lookup exploded"  # type: ignore[index]
    gate = Gate()
    assert pool.submit(gate.job) is True
    assert pool.submit(gate.job) is True
    assert pool.submit(gate.job) is False  # full capacity is back, and no more
    gate.release.set()
    assert wait_for(lambda: pool.in_use == 0)
    assert gate.finished == 2


def test_concurrent_submits_never_exceed_capacity(pools: list[WorkPool]) -> None:
    pool = make(pools, 3, 4)
    gate = Gate()
    start = threading.Barrier(20)
    accepted: list[bool] = []
    lock = threading.Lock()

    def submitter() -> None:
        start.wait()
        outcome = pool.submit(gate.job)
        with lock:
            accepted.append(outcome)

    threads = [threading.Thread(target=submitter) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert accepted.count(True) == 7
    assert accepted.count(False) == 13
    assert pool.in_use == 7
    gate.release.set()
    assert wait_for(lambda: pool.in_use == 0)
    assert gate.finished == 7


def test_shutdown_waits_for_running_jobs_then_refuses(pools: list[WorkPool]) -> None:
    pool = make(pools, 2, 2)
    gate = Gate()
    assert pool.submit(gate.job)
    assert pool.submit(gate.job)
    assert wait_for(lambda: gate.started == 2)
    threading.Timer(0.05, gate.release.set).start()
    pool.shutdown(wait=True)
    assert gate.finished == 2
    assert pool.in_use == 0
    ran = threading.Event()
    assert pool.submit(ran.set) is False
    assert pool.in_use == 0  # the refused submit gave its slot back
    assert not ran.wait(0.05)


def test_shutdown_without_waiting_drops_queued_jobs(pools: list[WorkPool]) -> None:
    pool = make(pools, 1, 3)
    gate = Gate()
    queued = threading.Event()
    assert pool.submit(gate.job)
    assert wait_for(lambda: gate.started == 1)
    assert pool.submit(queued.set)
    assert pool.submit(queued.set)
    pool.shutdown(wait=False)
    gate.release.set()
    assert wait_for(lambda: gate.finished == 1)
    assert not queued.wait(0.1)
    assert pool.submit(queued.set) is False


def test_in_use_after_shutdown_without_waiting_counts_no_cancelled_jobs(pools: list[WorkPool]) -> None:
    pool = make(pools, 1, 3)
    gate = Gate()
    assert pool.submit(gate.job)
    assert wait_for(lambda: gate.started == 1)
    assert pool.submit(lambda: None)
    assert pool.submit(lambda: None)
    pool.shutdown(wait=False)
    gate.release.set()
    assert wait_for(lambda: gate.finished == 1)
    assert wait_for(lambda: pool.in_use == 0, timeout=0.5)


def test_drain_lets_running_and_waiting_jobs_finish_then_refuses(pools: list[WorkPool]) -> None:
    pool = make(pools, 1, 4)
    gate = Gate()
    abandoned: list[int] = []
    for number in range(3):  # one runs, two wait
        assert pool.submit(gate.job, on_abandon=lambda number=number: abandoned.append(number))
    threading.Timer(0.2, gate.release.set).start()
    drained = pool.drain(grace=WAIT)
    assert (drained.finished, drained.abandoned) == (3, 0)
    assert gate.finished == 3 and abandoned == [] and not pool.abandoned
    assert not pool.submit(gate.job)  # drained: no more work


def test_drain_abandons_what_is_left_at_the_deadline_and_says_so_for_each(pools: list[WorkPool]) -> None:
    pool = make(pools, 1, 4)
    gate = Gate()
    abandoned: list[int] = []
    for number in range(3):
        assert pool.submit(gate.job, on_abandon=lambda number=number: abandoned.append(number))
    assert wait_for(lambda: gate.started == 1)
    drained = pool.drain(grace=0.05)
    gate.release.set()
    assert (drained.finished, drained.abandoned) == (0, 3)
    assert sorted(abandoned) == [0, 1, 2]  # the running one and the two that never started
    assert pool.abandoned
    assert wait_for(lambda: gate.finished == 1)  # the waiting two never run
    assert gate.started == 1
