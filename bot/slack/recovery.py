"""Acknowledged commands that outlive their process: recorded before work starts, answered after a restart.

`AcceptedWork.accept` records a command (a slash command, a mention or a DM) in the state store
(`bot.state.work`) with a claim this process renews while it lives; `finish` deletes it once answered. A
background loop renews this process's claims and takes the commands whose claim ran out (their process stopped
or died): each is answered by one process, with access checked again (it may have changed since), where it was
asked: through the `response_url`, which Slack keeps valid for 30 minutes, or in the mention's or DM's thread.
Older ones are dropped with a log line (an answer that late would surprise more than help). The `response_url`
itself is never logged.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from bot.access.policy import Requester
from bot.state.work import AcceptedCommand, Origin, WorkStore

log = logging.getLogger(__name__)

RESPONSE_URL_LIFETIME = 30 * 60.0  # Slack's limit; a minute is kept in hand for the answer to arrive
CLAIM_BATCH = 50
RESTARTING = "The bot restarted before it could answer this. Ask again in a minute."
_DESCRIBED = {Origin.COMMAND: "slash command", Origin.MENTION: "mention", Origin.DIRECT: "direct message"}


def requester_of(command: AcceptedCommand) -> Requester:
    """Who asked, where: the ids recorded from the signed request that was acknowledged."""
    return Requester(
        command.team_id,
        command.channel_id,
        command.user_id,
        command.enterprise_id,
        command.user_team_id,
        command.shared_channel,
    )


class AcceptedWork:
    def __init__(self, store: WorkStore, *, takeover: float, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._takeover = takeover  # a claim lasts this long unless renewed
        self._clock = clock
        self._lock = threading.Lock()
        self._mine: set[str] = set()  # commands this process is answering: their claims are renewed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def durable(self) -> bool:
        """Whether a command left unanswered here is answered by another (or the restarted) process."""
        return self._store.durable

    def accept(
        self,
        requester: Requester,
        text: str,
        response_url: str = "",
        *,
        origin: Origin = Origin.COMMAND,
        thread_ts: str | None = None,
    ) -> str | None:
        """Record an acknowledged command; None when the store cannot keep it (it is still answered here).

        A slash command is answered through `response_url`; a mention or DM (`origin`) in `thread_ts`."""
        command = AcceptedCommand(
            uuid.uuid4().hex,
            text,
            response_url,
            requester.team_id,
            requester.channel_id,
            requester.user_id,
            requester.enterprise_id,
            requester.user_team_id,
            requester.shared_channel,
            self._clock(),
            origin,
            thread_ts,
        )
        try:
            self._store.record(command, self._clock() + self._takeover)
        except Exception as exc:  # the store is away: the command is answered, but would not survive a restart
            log.warning("could not keep an acknowledged command for recovery (%s)", type(exc).__name__)
            return None
        with self._lock:
            self._mine.add(command.id)
        return command.id

    def finish(self, command_id: str | None) -> None:
        """The command was answered (or told it cannot be): forget it."""
        if command_id is None:
            return
        with self._lock:
            self._mine.discard(command_id)
        try:
            self._store.done(command_id)
        except Exception as exc:
            log.warning("could not delete an answered command's record (%s)", type(exc).__name__)

    def recover_once(self, answer: Callable[[AcceptedCommand], bool]) -> int:
        """Renew this process's claims, then answer commands left by a stopped process; how many were taken."""
        now = self._clock()
        with self._lock:
            mine = set(self._mine)
        self._store.renew(mine, now + self._takeover)
        taken = self._store.claim_due(now, now + self._takeover, CLAIM_BATCH)
        for command in taken:
            if command.accepted_at < now - RESPONSE_URL_LIFETIME + 60:
                log.warning(
                    "dropped a %s acknowledged at %s (channel %s, user %s): %s",
                    _DESCRIBED[command.origin],
                    datetime.fromtimestamp(command.accepted_at, UTC).isoformat(timespec="seconds"),
                    command.channel_id,
                    command.user_id,
                    "its response_url has expired" if command.origin is Origin.COMMAND else "too late to answer",
                )
                self._store.done(command.id)
                continue
            with self._lock:
                self._mine.add(command.id)
            if not self._answered(answer, command):  # its claim runs out and it is taken again later
                with self._lock:
                    self._mine.discard(command.id)
        if taken:
            log.info("took over %d acknowledged command(s) left by a process that stopped", len(taken))
        return len(taken)

    @staticmethod
    def _answered(answer: Callable[[AcceptedCommand], bool], command: AcceptedCommand) -> bool:
        """Whether the command is on its way to an answer: False when the pool is full or answering failed."""
        try:
            return answer(command)
        except Exception:  # the access check could not be made, say: fail closed, try again later
            log.exception("answering a command taken over from a stopped process failed; trying again later")
            return False

    def start(self, answer: Callable[[AcceptedCommand], bool]) -> None:
        """Recover now (a restart), then keep renewing and recovering every third of the takeover time."""

        def run() -> None:
            while True:
                try:
                    self.recover_once(answer)
                except Exception as exc:  # the store is away: try again next round
                    log.warning("recovering acknowledged commands failed (%s)", type(exc).__name__)
                if self._stop.wait(self._takeover / 3):
                    return

        self._thread = threading.Thread(target=run, daemon=True, name="accepted-work")
        self._thread.start()

    def stop(self) -> None:
        """No more takeovers; this process's claims run out on their own unless it answers them first."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def close(self) -> None:
        self._store.close()
