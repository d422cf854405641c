"""A bounded pool for slow work (Defender lookups, Slack posts), kept off the threads that acknowledge Slack.

Slack gives an app 3 seconds to acknowledge a command. Acknowledgements happen on the request thread;
the lookup is handed to this pool. When every worker is busy and the waiting line is full, `submit`
refuses at once so the person can be told "busy, try again" instead of being left in silence.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

log = logging.getLogger(__name__)


class WorkPool:
    def __init__(self, workers: int, max_pending: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lookup")
        self._capacity = workers + max_pending
        self._slots = threading.BoundedSemaphore(self._capacity)
        self._lock = threading.Lock()
        self._active = 0

    def submit(self, job: Callable[[], None]) -> bool:
        """Run `job` on a worker; False (and nothing queued) when the pool is saturated."""
        if not self._slots.acquire(blocking=False):
            return False
        with self._lock:
            self._active += 1
        try:
            # The job keeps the submitting request's context: its correlation id tags the job's log lines.
            future = self._executor.submit(self._run, partial(contextvars.copy_context().run, job))
        except RuntimeError:  # shutting down
            self._release()
            return False
        # A job cancelled by shutdown never runs `_run`, so its slot is given back here.
        future.add_done_callback(lambda f: self._release() if f.cancelled() else None)
        return True

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:
            log.exception("background job failed")
        finally:
            self._release()

    def _release(self) -> None:
        with self._lock:
            self._active -= 1
        self._slots.release()

    @property
    def in_use(self) -> int:
        """Jobs running or waiting."""
        with self._lock:
            return self._active

    @property
    def capacity(self) -> int:
        return self._capacity

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=not wait)
