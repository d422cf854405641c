"""A bounded pool for slow work (Defender lookups, Slack posts), kept off the threads that acknowledge Slack.

Slack gives an app 3 seconds to acknowledge a command. Acknowledgements happen on the request thread;
the lookup is handed to this pool. When every worker is busy and the waiting line is full, `submit`
refuses at once so the person can be told "busy, try again" instead of being left in silence.

On shutdown `drain` stops taking jobs and lets the acknowledged ones finish within a grace period; each job
still running or waiting at its end gets its `on_abandon` call, so none is dropped without a word.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Drained:
    finished: int  # jobs that ended during the grace period
    abandoned: int  # jobs still running or waiting when it ran out


class WorkPool:
    def __init__(self, workers: int, max_pending: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lookup")
        self._capacity = workers + max_pending
        self._slots = threading.BoundedSemaphore(self._capacity)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._active = 0
        self._ended = 0
        self._closed = False
        self.abandoned = False  # the drain's grace period ran out: what still runs has been given up
        self._ids = itertools.count()
        self._abandon: dict[int, Callable[[], object]] = {}  # jobs running or waiting → what to do if left

    def submit(self, job: Callable[[], None], on_abandon: Callable[[], object] | None = None) -> bool:
        """Run `job` on a worker; False (and nothing queued) when the pool is saturated or draining."""
        if self._closed or not self._slots.acquire(blocking=False):
            return False
        with self._lock:
            self._active += 1
            job_id = next(self._ids)
            if on_abandon is not None:
                self._abandon[job_id] = on_abandon
        try:
            # The job keeps the submitting request's context: its correlation id tags the job's log lines.
            future = self._executor.submit(self._run, job_id, partial(contextvars.copy_context().run, job))
        except RuntimeError:  # shutting down
            self._release(job_id)
            return False
        # A job cancelled by shutdown never runs `_run`, so its slot is given back here.
        future.add_done_callback(lambda f: self._release(job_id) if f.cancelled() else None)
        return True

    def _run(self, job_id: int, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:
            log.exception("background job failed")
        finally:
            self._release(job_id)

    def _release(self, job_id: int) -> None:
        with self._lock:
            self._active -= 1
            self._ended += 1
            self._abandon.pop(job_id, None)
            self._idle.notify_all()
        self._slots.release()

    @property
    def in_use(self) -> int:
        """Jobs running or waiting."""
        with self._lock:
            return self._active

    @property
    def capacity(self) -> int:
        return self._capacity

    def drain(self, grace: float) -> Drained:
        """Wait up to `grace` seconds for every job to end, then take no more and abandon what is left."""
        with self._lock:
            ended_before = self._ended
            # Jobs still come in from requests that passed the HTTP gate before it closed: they are drained too.
            self._idle.wait_for(lambda: self._active == 0, timeout=grace)
            self._closed = True
            finished, abandoned = self._ended - ended_before, self._active
            left = list(self._abandon.values())
            self._abandon.clear()
            self.abandoned = abandoned > 0
        self._executor.shutdown(wait=False, cancel_futures=True)
        for on_abandon in left:
            try:
                on_abandon()
            except Exception:
                log.exception("telling about abandoned work failed")
        return Drained(finished, abandoned)

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=not wait)
