"""Acknowledged commands in the SQLite state file, in a table of their own (`accepted_work`).

The table sits beside the watch store's tables in the same file but is created here (`IF NOT EXISTS`), so the
watch store's migrations are not involved. A claim is taken in an `IMMEDIATE` transaction: two processes on
one file never both take the same command.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Collection

from bot.state.sqlite import sqlite_path
from bot.state.work import AcceptedCommand

log = logging.getLogger(__name__)

_TABLE = (
    "CREATE TABLE IF NOT EXISTS accepted_work (id TEXT PRIMARY KEY, command TEXT NOT NULL, claimed_until REAL NOT NULL)"
)


class SqliteWorkStore:
    durable = True

    def __init__(self, state_url: str) -> None:
        self._lock = threading.Lock()
        # The watch store opened (and created, owner-only) the file first; this is a second connection to it.
        self._db = sqlite3.connect(sqlite_path(state_url), check_same_thread=False, isolation_level=None, timeout=30)
        # As the watch store's connection: no fsync per commit in WAL mode (a kill -9 loses nothing committed;
        # only a power loss can), so a record on the acknowledgement path costs no disk flush.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_TABLE)

    def record(self, command: AcceptedCommand, claim_until: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO accepted_work (id, command, claimed_until) VALUES (?, ?, ?)",
                (command.id, command.encode(), claim_until),
            )

    def done(self, command_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM accepted_work WHERE id = ?", (command_id,))

    def renew(self, command_ids: Collection[str], claim_until: float) -> None:
        with self._lock:
            self._db.executemany(
                "UPDATE accepted_work SET claimed_until = ? WHERE id = ?", [(claim_until, i) for i in command_ids]
            )

    def claim_due(self, now: float, claim_until: float, limit: int) -> list[AcceptedCommand]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    "SELECT id, command FROM accepted_work WHERE claimed_until <= ? LIMIT ?", (now, limit)
                ).fetchall()
                self._db.executemany(
                    "UPDATE accepted_work SET claimed_until = ? WHERE id = ?", [(claim_until, i) for i, _ in rows]
                )
            except BaseException:
                if self._db.in_transaction:  # SQLite may have rolled back already (a full disk): keep its error
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return [command for command in (self._decoded(i, text) for i, text in rows) if command is not None]

    def _decoded(self, command_id: str, text: str) -> AcceptedCommand | None:
        try:
            return AcceptedCommand.decode(text)
        except (ValueError, TypeError):
            log.warning("dropped an unreadable acknowledged-command record %s", command_id)
            self.done(command_id)
            return None

    def close(self) -> None:
        with self._lock:
            self._db.close()
