"""Where watches live: a narrow interface, and the embedded SQLite implementation.

Exactly-once rests on `record_check`: the new alert state and the changes found are written in one
transaction, each change under a unique key (watch, kind, alert, new value). A crash before the commit
means the next check finds the same changes again; a crash after it leaves them pending, to be posted
(or found already posted) on restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from bot.state.watches import (
    AlertState,
    Change,
    PendingReply,
    StoreFailing,
    Watch,
    WatchStatus,
    iso_time,
    parse_time,
    watch_from_row,
)

DEFAULT_STATE_URL = "sqlite:///device-alerts.db"


_MIGRATIONS: tuple[str, ...] = (
    # 1: watches, per-alert state, changes (pending and posted replies), metadata, and the poller's lease
    """
    CREATE TABLE watches (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        machine_id TEXT NOT NULL,
        device_name TEXT NOT NULL,
        filter_text TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        root_ts TEXT,
        status TEXT NOT NULL,
        pause_reason TEXT,
        last_checked_at TEXT
    );
    CREATE INDEX watches_live ON watches (status, channel, machine_id);
    CREATE TABLE alert_state (
        watch_id INTEGER NOT NULL REFERENCES watches (id),
        alert_id TEXT NOT NULL,
        status TEXT NOT NULL,
        assigned_to TEXT,
        last_update TEXT,
        PRIMARY KEY (watch_id, alert_id)
    );
    CREATE TABLE changes (
        watch_id INTEGER NOT NULL REFERENCES watches (id),
        change_key TEXT NOT NULL,
        check_id INTEGER NOT NULL,
        payload TEXT NOT NULL,
        attempted_at TEXT,
        posted_ts TEXT,
        PRIMARY KEY (watch_id, change_key)
    );
    CREATE INDEX changes_pending ON changes (posted_ts, watch_id, check_id);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires REAL NOT NULL);
    """,
    # 2: the live watch of a device in a channel, found through an index of live watches only (`status != 'ended'`
    # cannot use an index led by status: starting a watch scanned every live watch); newest first without a sort
    """
    DROP INDEX watches_live;
    CREATE INDEX watches_live_by_device ON watches (channel, machine_id, id) WHERE status != 'ended';
    """,
)
# The live (active or paused) watch of one device in one channel; the newest, should there ever be two.
LIVE_WATCH_OF_DEVICE = (
    "SELECT * FROM watches WHERE channel = ? AND machine_id = ? AND status != 'ended' ORDER BY id DESC"
)


def sqlite_path(state_url: str) -> str:
    """`sqlite:///relative.db`, `sqlite:////absolute.db` or `sqlite:///:memory:` → a path sqlite3 opens."""
    parts = urlsplit(state_url)
    if parts.scheme != "sqlite" or parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
        raise ValueError("expected sqlite:///path/to/file.db")
    return parts.path[1:]


def _create_private(path: str | Path) -> None:
    """Create the database file readable by its owner only: it holds alert titles and Slack ids.

    SQLite gives its -wal and -shm files the database file's permissions. An existing file is left as it is.
    """
    if str(path) == ":memory:" or str(path).startswith("file:"):
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class StoreUnopenable(Exception):
    """The SQLite file cannot be created or opened (a missing or read-only directory, a directory or another
    file in its place, a damaged file, a newer schema, a lock that does not clear): a start-up error."""


# SQLite's result codes for a store that cannot be written, and what to tell people (`StoreFailing.reason`).
_WRITE_FAILURES = {
    "SQLITE_FULL": "its database is full",
    "SQLITE_READONLY": "its database is read-only",
    "SQLITE_IOERR": "its database cannot be written (an I/O error)",
    "SQLITE_CORRUPT": "its database is damaged",
    "SQLITE_CANTOPEN": "its database file cannot be opened",
    "SQLITE_BUSY": "its database is locked by another process",
}
PROBE_INTERVAL = 5.0  # seconds between two write probes for /healthz


def _write_failure(exc: sqlite3.Error) -> str | None:
    """The reason for people when `exc` means the file cannot be written; None for any other error."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return next((reason for code, reason in _WRITE_FAILURES.items() if name.startswith(code)), None)


class SqliteWatchStore:
    """The embedded store: one SQLite file in WAL mode, safe for the threads of one or more processes."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self._lock = threading.RLock()
        self._problem: str | None = None  # why the last write failed, until a write probe succeeds
        self._probed_at = -PROBE_INTERVAL
        _create_private(path)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=busy_timeout)
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            damage = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if damage != "ok":  # a damaged file fails here, not at the first watch
                raise sqlite3.DatabaseError(f"damaged: {str(damage)[:100]}")
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def from_url(cls, state_url: str, *, busy_timeout: float = 30.0) -> SqliteWatchStore:
        """The store at `sqlite:///…`; `StoreUnopenable` (one line, no traceback) when the file cannot be opened."""
        path = sqlite_path(state_url)
        try:
            return cls(path, busy_timeout=busy_timeout)
        except (OSError, sqlite3.Error, StoreFailing) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise StoreUnopenable(f"cannot open the SQLite file {path!r} ({reason})") from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; a file that cannot be written raises `StoreFailing` and is remembered."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:  # SQLite may have rolled back already (a full disk)
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                reason = _write_failure(exc)
                if reason is None:
                    raise
                self._problem = reason
                raise StoreFailing(reason) from exc

    def write_problem(self) -> str | None:
        """For /healthz: why watches cannot be saved, or None. Every `PROBE_INTERVAL` seconds at most it writes
        (and deletes) a page's worth of data, so a full disk shows before someone's `watch` fails on it."""
        with self._lock:
            if time.monotonic() - self._probed_at < PROBE_INTERVAL:
                return self._problem
            self._probed_at, before = time.monotonic(), self._problem
            busy_timeout = self._db.execute("PRAGMA busy_timeout").fetchone()[0]
            self._db.execute("PRAGMA busy_timeout = 1000")  # /healthz answers in time, whoever holds the lock
            try:
                with self._transaction() as db:
                    size = int(db.execute("PRAGMA page_size").fetchone()[0])
                    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('write-probe', zeroblob(?))", (size,))
                    db.execute("DELETE FROM meta WHERE key = 'write-probe'")
            except StoreFailing as exc:
                if exc.reason == _WRITE_FAILURES["SQLITE_BUSY"]:
                    self._problem = before  # another process's write under way: this probe tells nothing
                return self._problem
            finally:
                self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout)}")
            self._problem = None
            return None

    def _migrate(self) -> None:
        with self._transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(_MIGRATIONS):  # written by a newer bot: guessing at its tables could lose watches
                raise sqlite3.DatabaseError(f"its schema version {version} is newer than this bot's")
            for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # Watches ----------------------------------------------------------------------------------

    @staticmethod
    def _watch(row: sqlite3.Row) -> Watch:
        return watch_from_row(dict(row))

    def start_watch(
        self, *, channel: str, machine_id: str, device_name: str, filter_text: str, user: str, expires_at: datetime,
        now: datetime,
    ) -> tuple[Watch, bool]:  # fmt: skip
        with self._transaction() as db:
            existing = self._live_row(db, channel, machine_id)
            if existing is not None:
                db.execute(
                    "UPDATE watches SET expires_at = ?, filter_text = ?, created_by = ?, status = 'active',"
                    " pause_reason = NULL WHERE id = ?",
                    (iso_time(expires_at), filter_text, user, existing["id"]),
                )
                watch_id, created = existing["id"], False
            else:
                cursor = db.execute(
                    "INSERT INTO watches (channel, machine_id, device_name, filter_text, created_by, created_at,"
                    " expires_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'active')",
                    (channel, machine_id, device_name, filter_text, user, iso_time(now), iso_time(expires_at)),
                )
                watch_id, created = cursor.lastrowid, True
            row = db.execute("SELECT * FROM watches WHERE id = ?", (watch_id,)).fetchone()
            return self._watch(row), created

    @staticmethod
    def _live_row(db: sqlite3.Connection, channel: str, machine_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = db.execute(LIVE_WATCH_OF_DEVICE, (channel, machine_id)).fetchone()
        return row

    def watch(self, watch_id: int) -> Watch | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM watches WHERE id = ?", (watch_id,)).fetchone()
        return self._watch(row) if row else None

    def find_watch(self, channel: str, machine_id: str) -> Watch | None:
        with self._lock:
            row = self._live_row(self._db, channel, machine_id)
        return self._watch(row) if row else None

    def live_watches(self, channel: str | None = None) -> list[Watch]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM watches WHERE status != 'ended' AND (? IS NULL OR channel = ?) ORDER BY id",
                (channel, channel),
            ).fetchall()
        return [self._watch(row) for row in rows]

    def set_root(self, watch_id: int, ts: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE watches SET root_ts = ? WHERE id = ?", (ts, watch_id))

    def set_status(self, watch_id: int, status: WatchStatus, reason: str | None = None) -> None:
        with self._transaction() as db:
            db.execute("UPDATE watches SET status = ?, pause_reason = ? WHERE id = ?", (status.value, reason, watch_id))

    # State and changes ------------------------------------------------------------------------

    def known_state(self, watch_id: int) -> dict[str, AlertState]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM alert_state WHERE watch_id = ?", (watch_id,)).fetchall()
        return {
            row["alert_id"]: AlertState(row["status"], row["assigned_to"], parse_time(row["last_update"]))
            for row in rows
        }

    def record_check(
        self, watch_id: int, state: dict[str, AlertState], changes: list[Change], checked_at: datetime
    ) -> int | None:
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO alert_state (watch_id, alert_id, status, assigned_to, last_update) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (watch_id, alert_id) DO UPDATE SET status = excluded.status,"
                " assigned_to = excluded.assigned_to, last_update = excluded.last_update",
                [
                    (watch_id, alert_id, s.status, s.assigned_to, iso_time(s.last_update))
                    for alert_id, s in state.items()
                ],
            )
            db.execute("UPDATE watches SET last_checked_at = ? WHERE id = ?", (iso_time(checked_at), watch_id))
            if not changes:
                return None
            check_id = int(db.execute("SELECT COALESCE(MAX(check_id), 0) + 1 FROM changes").fetchone()[0])
            inserted = 0
            for change in changes:
                cursor = db.execute(
                    "INSERT INTO changes (watch_id, change_key, check_id, payload) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (watch_id, change_key) DO NOTHING",
                    (watch_id, change.key, check_id, json.dumps(change.to_json())),
                )
                inserted += cursor.rowcount
            return check_id if inserted else None

    def pending_replies(self) -> list[PendingReply]:
        with self._lock:
            rows = self._db.execute(
                "SELECT watch_id, check_id, payload, attempted_at FROM changes WHERE posted_ts IS NULL"
                " ORDER BY check_id, rowid"
            ).fetchall()
        grouped: dict[tuple[int, int], list[sqlite3.Row]] = {}
        for row in rows:
            grouped.setdefault((row["watch_id"], row["check_id"]), []).append(row)
        return [
            PendingReply(
                watch_id,
                check_id,
                tuple(Change.from_json(json.loads(r["payload"])) for r in group),
                parse_time(group[0]["attempted_at"]),
            )
            for (watch_id, check_id), group in grouped.items()
        ]

    def mark_attempted(self, reply: PendingReply, at: datetime) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE changes SET attempted_at = ? WHERE watch_id = ? AND check_id = ?",
                (iso_time(at), reply.watch_id, reply.check_id),
            )

    def mark_posted(self, reply: PendingReply, ts: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE changes SET posted_ts = ? WHERE watch_id = ? AND check_id = ?",
                (ts, reply.watch_id, reply.check_id),
            )

    # Metadata and the poller's lease ----------------------------------------------------------

    def lost_data(self) -> bool:
        """A file does not empty itself while open: its loss (a deleted volume) shows as errors, not as emptiness."""
        return False

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row["value"]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def try_lease(self, holder: str, now: float, ttl: float) -> bool:
        """Hold (or renew) the poller lease; another holder's lease counts until it expires."""
        with self._transaction() as db:
            row = db.execute("SELECT holder, expires FROM lease WHERE name = 'poller'").fetchone()
            if row is not None and row["holder"] != holder and row["expires"] > now:
                return False
            db.execute(
                "INSERT INTO lease (name, holder, expires) VALUES ('poller', ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires",
                (holder, now + ttl),
            )
            return True

    def release_lease(self, holder: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM lease WHERE name = 'poller' AND holder = ?", (holder,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
