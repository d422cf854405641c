"""A full disk for the SQLite watch store, for real: SQLite's page limit, on the store's own connection."""

from __future__ import annotations

import sqlite3

from bot.state.sqlite import SqliteWatchStore

_FILLERS = (
    "INSERT INTO meta (key, value) VALUES (?, zeroblob(length(?)))",  # takes the free pages, then room in meta's
    "INSERT INTO watches (channel, machine_id, device_name, filter_text, created_by, created_at, expires_at, status)"
    " VALUES ('C0OLD', ?, ?, '', 'U0OLD', '', '', 'ended')",
)


def fill_to_the_brim(store: SqliteWatchStore) -> None:
    """The disk is full: no page can be added, none is free, and the tables' pages have no room left."""
    db = store._db  # the page limit holds per connection: the store's own must carry it
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
    for statement in _FILLERS:
        for size in (4096, 1024, 256, 64, 16, 1):
            for number in range(10_000):
                try:
                    db.execute(statement, (f"filler-{size}-{number}", "x" * size))
                except sqlite3.OperationalError:
                    break


def make_room(store: SqliteWatchStore) -> None:
    """Space on the disk again; the next /healthz probe sees it at once."""
    store._db.execute("PRAGMA max_page_count = 1073741823")
    store._probed_at = float("-inf")
