"""Acknowledged work kept until it is answered, so a process that stops or dies does not lose it.

A slash command is acknowledged at once ("Looking up …") and answered later through its `response_url`, which
Slack keeps valid for 30 minutes; a mention or a direct message is acknowledged (HTTP 200 to its event, which
Slack then never delivers again) and answered later with `chat.postMessage` in its thread. Each acknowledged
command, whatever its origin, is recorded here before its work starts and deleted
once answered. Every record carries a claim (an expiry time): the process working on it renews the claim while
it lives; a claim that expires marks work whose process is gone, and `claim_due` hands it to exactly one other
process (or the restarted one), which answers it.

`MemoryWorkStore` keeps the code path one for a single process without a file (it survives nothing);
`bot.state.work_sqlite` and `bot.state.redis.work` keep the records where a restarted or surviving process
finds them. A record holds what answering needs and nothing more: the command text, who asked where, the
`response_url` (a capability: never logged) or the thread to answer in, and when it was accepted.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Protocol


class Origin(StrEnum):
    """How a command arrived, and so how it is answered."""

    COMMAND = "command"  # a slash command: through its `response_url`
    MENTION = "mention"  # an @mention in a channel: `chat.postMessage` in the mention's thread
    DIRECT = "im"  # a direct message: `chat.postMessage` in the DM (in its thread, if it was in one)


@dataclass(frozen=True, slots=True)
class AcceptedCommand:
    """One acknowledged command: enough to check access again and answer it where it was asked.

    A record written before mentions and DMs were kept has no `origin`: it is a slash command.
    """

    id: str
    text: str
    response_url: str  # "" for a mention or a DM
    team_id: str
    channel_id: str
    user_id: str
    enterprise_id: str | None
    user_team_id: str | None
    shared_channel: bool
    accepted_at: float  # seconds since the epoch
    origin: Origin = Origin.COMMAND
    thread_ts: str | None = None  # a mention's (or a DM's) thread: where the answer goes

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | bytes) -> AcceptedCommand:
        """A stored record; `ValueError` (or `TypeError`) when it is not one this version wrote."""
        fields = json.loads(text)
        if not isinstance(fields, dict):
            raise ValueError("not a record")
        fields["origin"] = Origin(fields.get("origin", Origin.COMMAND))  # ValueError for one it does not know
        return cls(**fields)


class WorkStore(Protocol):
    """Where acknowledged commands wait until answered. Times are seconds since the epoch (every process's clock)."""

    @property
    def durable(self) -> bool:
        """Whether a record outlives this process (a file or Redis), so another process can answer it."""
        ...

    def record(self, command: AcceptedCommand, claim_until: float) -> None: ...
    def done(self, command_id: str) -> None: ...
    def renew(self, command_ids: Collection[str], claim_until: float) -> None:
        """Extend this process's claims on the commands it is working on."""
        ...

    def claim_due(self, now: float, claim_until: float, limit: int) -> list[AcceptedCommand]:
        """Commands whose claim ran out by `now` (their process is gone), each claimed until `claim_until` for
        the caller alone. A record that cannot be read is deleted, not handed out."""
        ...

    def close(self) -> None: ...


class MemoryWorkStore:
    """This process only (a `sqlite:///:memory:` state): the same calls, nothing kept past the process."""

    durable = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, tuple[AcceptedCommand, float]] = {}

    def record(self, command: AcceptedCommand, claim_until: float) -> None:
        with self._lock:
            self._items[command.id] = (command, claim_until)

    def done(self, command_id: str) -> None:
        with self._lock:
            self._items.pop(command_id, None)

    def renew(self, command_ids: Collection[str], claim_until: float) -> None:
        with self._lock:
            for command_id in command_ids:
                if command_id in self._items:
                    self._items[command_id] = (self._items[command_id][0], claim_until)

    def claim_due(self, now: float, claim_until: float, limit: int) -> list[AcceptedCommand]:
        with self._lock:
            due = [command for command, until in self._items.values() if until <= now][:limit]
            for command in due:
                self._items[command.id] = (command, claim_until)
            return due

    def pending(self) -> int:
        with self._lock:
            return len(self._items)

    def close(self) -> None:
        pass
