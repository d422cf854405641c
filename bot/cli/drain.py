"""Stopping a serving process without losing what it acknowledged: SIGTERM (every deploy, Heroku's daily
restart) and SIGINT (Ctrl-C) alike.

A platform sends SIGTERM and kills the process some seconds later (Heroku: 30 s). On the signal the process
stops taking new work (HTTP answers Slack "restarting", Socket Mode hangs up), lets acknowledged work finish
within `BOT_DRAIN_SECONDS`, releases the watch poller's lease so the next process polls at once, and only then
closes its clients. Commands still unanswered at the deadline stay in the state store for the next process
(`bot.slack.recovery`); without a store that outlives the process, the person is told to ask again.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from bot.runtime import SlackBot

log = logging.getLogger(__name__)


@contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT (instead of dying, or `KeyboardInterrupt`); the old handlers after."""
    stopping = threading.Event()

    def on_signal(number: int, _frame: FrameType | None) -> None:
        if stopping.is_set():
            log.warning("%s again: still finishing acknowledged work", signal.Signals(number).name)
            return
        log.info("%s: finishing acknowledged work, then stopping", signal.Signals(number).name)
        stopping.set()

    previous = {number: signal.signal(number, on_signal) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stopping
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def wait_for(stopping: threading.Event) -> None:
    """Block the main thread until a signal arrives (waking now and then, so the handler runs promptly)."""
    while not stopping.wait(0.5):
        pass


def drain(bot: SlackBot, grace: float) -> None:
    """Finish acknowledged work within `grace` seconds, then release the watch lease (new work is refused)."""
    bot.draining.set()
    drained = bot.pool.drain(grace)
    bot.accepted.stop()  # after the pool: claims on work still running stay renewed until here
    bot.poller.stop()  # releases the lease: the next process's poller takes it at its next try
    left = ""
    if drained.abandoned:
        left = "; kept for the next process" if bot.accepted.durable else "; each person told to ask again"
    log.log(
        logging.WARNING if drained.abandoned else logging.INFO,
        "stopped taking work: %d acknowledged jobs finished, %d abandoned at the %g s deadline%s",
        drained.finished,
        drained.abandoned,
        grace,
        left,
    )
