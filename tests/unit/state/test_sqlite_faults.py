"""The SQLite watch store on files that are not what it needs: each is one clear start-up error, and a full file
at run time is `StoreFailing` with a reason for people and for /healthz (the full-disk stand-in is SQLite's own
page limit, so the file is full for real)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.state.sqlite import SqliteWatchStore, StoreUnopenable
from bot.state.watches import StoreFailing
from tests.doubles.sqlite import fill_to_the_brim, make_room

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def start_watch(store: SqliteWatchStore, machine_id: str) -> None:
    store.start_watch(
        channel="C0INCIDENT", machine_id=machine_id, device_name=machine_id, filter_text="", user="U0ALICE",
        expires_at=NOW + timedelta(hours=1), now=NOW,
    )  # fmt: skip


def damaged(path: Path) -> None:
    """A real store whose pages after the first are overwritten: the header still says SQLite."""
    store = SqliteWatchStore(path)
    for number in range(50):
        start_watch(store, f"m{number:03d}")
    store.close()
    with path.open("r+b") as file:
        file.seek(4096)
        file.write(b"\xa5" * 8192)


def newer_schema(path: Path) -> None:
    SqliteWatchStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("a-directory", "unable to open database file"),
        ("not-a-database", "file is not a database"),
        ("damaged", "malformed"),
        ("newer-schema", "its schema version 99 is newer than this bot's"),
    ],
)
def test_a_file_the_store_cannot_use_is_one_clear_start_up_error(tmp_path: Path, case: str, reason: str) -> None:
    path = tmp_path / "state.db"
    if case == "a-directory":
        path.mkdir()
    elif case == "not-a-database":
        path.write_text("not a database, only text\n" * 100)
    elif case == "damaged":
        damaged(path)
    else:
        newer_schema(path)
    with pytest.raises(StoreUnopenable, match=f"cannot open the SQLite file '{path}' \\(.*{reason}"):
        SqliteWatchStore.from_url(f"sqlite:///{path}")


def test_a_file_another_process_keeps_locked_is_one_clear_start_up_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SqliteWatchStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnopenable, match="database is locked"):
            SqliteWatchStore.from_url(f"sqlite:///{path}", busy_timeout=0.1)
    finally:
        holder.close()


def test_a_full_file_is_a_store_failing_with_its_reason_until_there_is_room_again(tmp_path: Path) -> None:
    store = SqliteWatchStore(tmp_path / "state.db")
    try:
        assert store.write_problem() is None
        fill_to_the_brim(store)
        with pytest.raises(StoreFailing) as failed:
            start_watch(store, "m001")
        assert failed.value.reason == "its database is full"
        assert store.write_problem() == "its database is full"
        assert store.live_watches() == []  # nothing half-written

        make_room(store)
        assert store.write_problem() is None
        start_watch(store, "m001")
        assert len(store.live_watches()) == 1
    finally:
        store.close()


def test_another_process_s_write_under_way_is_not_reported_as_a_problem(tmp_path: Path) -> None:
    store = SqliteWatchStore(tmp_path / "state.db")
    holder = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process writing: the probe cannot get the lock
        assert store.write_problem() is None
        holder.execute("ROLLBACK")
        start_watch(store, "m001")
    finally:
        holder.close()
        store.close()
