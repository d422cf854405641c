"""The watch store: schema migrations, watches, remembered alert state, the changes table, meta and the lease.

Every behavioural test takes the `store` fixture (or `backend`, which opens several stores on the same data, as
several processes would), parametrized over SQLite and Redis (`REDIS_URL`, see tests/doubles/redis.py); only the
SQLite-specific checks (schema version, WAL, the file) open a `SqliteWatchStore` themselves.
"""

from __future__ import annotations

import queue
import sqlite3
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.state.redis.connection import RedisConnection
from bot.state.redis.watches import RedisWatchStore
from bot.state.sqlite import _MIGRATIONS, LIVE_WATCH_OF_DEVICE, SqliteWatchStore, sqlite_path
from bot.state.watches import AlertState, Change, ChangeKind, WatchStatus, WatchStore
from tests.doubles.concurrency import run_concurrently
from tests.doubles.redis import delete_prefix, require_redis, unique_prefix, url_with_prefix

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LATEST = len(_MIGRATIONS)
MID_A = "a" * 40
MID_B = "b" * 40


Opener = Callable[[], WatchStore]


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens stores on one fresh set of data (one SQLite file, or one Redis key prefix): one per process."""
    closers: list[Callable[[], None]] = []
    prefix = unique_prefix()

    def open_store() -> WatchStore:
        if request.param == "sqlite":
            opened: WatchStore = SqliteWatchStore(tmp_path / "watches.db")
            closers.append(opened.close)
            return opened
        state = RedisConnection(url_with_prefix(prefix))  # its own connection pool, as another process has
        closers.append(state.close)
        return RedisWatchStore(state)

    if request.param == "redis":
        require_redis()
    try:
        yield open_store
    finally:
        for close in closers:
            close()
        if request.param == "redis":
            delete_prefix(prefix)


@pytest.fixture
def store(backend: Opener) -> WatchStore:
    """A fresh store."""
    return backend()


def start(store: WatchStore, channel: str = "C1", machine_id: str = MID_A, **overrides: Any) -> tuple[Any, bool]:
    fields: dict[str, Any] = {
        "channel": channel,
        "machine_id": machine_id,
        "device_name": f"host-{machine_id[:4]}.contoso.local",
        "filter_text": "",
        "user": "U1",
        "expires_at": T0 + timedelta(hours=2),
        "now": T0,
    }
    fields.update(overrides)
    return store.start_watch(**fields)


def new(alert_id: str, at: str = "2026-11-27T12:00:00+00:00") -> Change:
    return Change(ChangeKind.NEW, alert_id, title=f"Alert {alert_id}", severity="High", new="New", at=at)


def status(alert_id: str, old: str, new_status: str, at: str) -> Change:
    return Change(ChangeKind.STATUS, alert_id, title=f"Alert {alert_id}", old=old, new=new_status, at=at)


# -- SQLite specifics -------------------------------------------------------------------------------------------


def test_migrations_create_the_latest_version_and_reopening_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    first = SqliteWatchStore(path)
    assert first.schema_version == LATEST
    watch, _ = start(first)
    first.set_meta("watermark", "x")
    first.close()

    again = SqliteWatchStore(path)  # must not re-run the migrations (CREATE TABLE would fail) nor lose data
    try:
        assert again.schema_version == LATEST
        assert again.watch(watch.id) == watch
        assert again.get_meta("watermark") == "x"
    finally:
        again.close()
    raw = sqlite3.connect(path)
    try:
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"watches", "alert_state", "changes", "meta", "lease"} <= tables
        assert raw.execute("PRAGMA user_version").fetchone()[0] == LATEST
    finally:
        raw.close()


def test_a_version_1_file_gets_the_live_watch_index_on_open_and_keeps_its_watches(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    raw = sqlite3.connect(path)
    raw.executescript(_MIGRATIONS[0] + "PRAGMA user_version = 1;")
    raw.execute(
        "INSERT INTO watches (channel, machine_id, device_name, filter_text, created_by, created_at, expires_at,"
        " status) VALUES ('C1', ?, 'host', '', 'U1', ?, ?, 'active')",
        (MID_A, T0.isoformat(), (T0 + timedelta(hours=2)).isoformat()),
    )
    raw.commit()
    raw.close()
    store = SqliteWatchStore(path)
    try:
        assert store.schema_version == LATEST
        found = store.find_watch("C1", MID_A)
        assert found is not None and found.device_name == "host"
        assert start(store)[1] is False  # the same live watch, found through the new index
    finally:
        store.close()


def test_finding_a_live_watch_reads_the_index_of_live_watches_not_the_table(tmp_path: Path) -> None:
    store = SqliteWatchStore(tmp_path / "w.db")
    for n in range(50):
        watch, _ = start(store, channel=f"C{n % 5}", machine_id=f"{n:040x}")
        if n % 2:
            store.set_status(watch.id, WatchStatus.ENDED)
    store.close()
    raw = sqlite3.connect(tmp_path / "w.db")
    try:
        raw.execute("ANALYZE")  # with the table's statistics, as a long-lived file may have them
        plan = " / ".join(row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {LIVE_WATCH_OF_DEVICE}", ("C1", MID_A)))
    finally:
        raw.close()
    assert "USING INDEX watches_live_by_device (channel=? AND machine_id=?)" in plan
    assert "SCAN watches" not in plan, plan  # not one row of the table beyond the device's own


def test_database_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    SqliteWatchStore(path).close()
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # WAL is persistent in the file
    finally:
        raw.close()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///device-alerts.db", "device-alerts.db"),
        ("sqlite:////var/lib/bot/w.db", "/var/lib/bot/w.db"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_sqlite_path(url: str, path: str) -> None:
    assert sqlite_path(url) == path


@pytest.mark.parametrize("url", ["redis://localhost/0", "sqlite://host/w.db", "sqlite:///", "w.db"])
def test_sqlite_path_rejects_other_urls(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///"):
        sqlite_path(url)


# -- watches ----------------------------------------------------------------------------------------------------


def test_start_watch_creates_then_extends_the_same_watch(store: WatchStore) -> None:
    watch, created = start(store, filter_text="severity:high")
    assert created is True
    assert (watch.channel, watch.machine_id, watch.filter_text) == ("C1", MID_A, "severity:high")
    assert watch.created_by == "U1"
    assert watch.status is WatchStatus.ACTIVE
    assert watch.created_at == T0
    assert watch.expires_at == T0 + timedelta(hours=2)
    assert (watch.root_ts, watch.pause_reason, watch.last_checked_at) == (None, None, None)

    store.set_root(watch.id, "111.000001")
    later = T0 + timedelta(hours=1)
    extended, created = start(store, user="U2", filter_text="", expires_at=later + timedelta(hours=8), now=later)
    assert created is False
    assert extended.id == watch.id
    assert extended.expires_at == later + timedelta(hours=8)
    assert (extended.created_by, extended.filter_text) == ("U2", "")
    assert extended.created_at == T0  # still the original watch
    assert extended.root_ts == "111.000001"  # its card is redrawn, not posted again


def test_watch_per_channel_and_device(store: WatchStore) -> None:
    a1, _ = start(store, "C1", MID_A)
    b1, _ = start(store, "C1", MID_B)
    a2, created = start(store, "C2", MID_A)
    assert created is True
    assert len({a1.id, b1.id, a2.id}) == 3
    assert [w.id for w in store.live_watches("C1")] == [a1.id, b1.id]
    assert [w.id for w in store.live_watches("C2")] == [a2.id]
    assert [w.id for w in store.live_watches()] == [a1.id, b1.id, a2.id]
    assert store.live_watches("C3") == []
    assert store.find_watch("C2", MID_A) == a2
    assert store.find_watch("C2", MID_B) is None
    assert store.watch(999_999) is None


def test_ended_watches_are_not_live_and_a_new_start_creates_a_new_watch(store: WatchStore) -> None:
    old, _ = start(store)
    store.set_status(old.id, WatchStatus.ENDED)
    assert store.live_watches() == []
    assert store.find_watch("C1", MID_A) is None
    ended = store.watch(old.id)
    assert ended is not None
    assert ended.status is WatchStatus.ENDED
    fresh, created = start(store)
    assert created is True
    assert fresh.id != old.id


def test_set_root_and_status(store: WatchStore) -> None:
    watch, _ = start(store)
    store.set_root(watch.id, "1700000000.000042")
    store.set_status(watch.id, WatchStatus.PAUSED, "the bot is not in the channel")
    paused = store.watch(watch.id)
    assert paused is not None
    assert paused.root_ts == "1700000000.000042"
    assert (paused.status, paused.pause_reason) == (WatchStatus.PAUSED, "the bot is not in the channel")
    assert [w.id for w in store.live_watches()] == [watch.id]  # paused watches are still live

    resumed, created = start(store)  # starting it again is how a paused watch resumes
    assert created is False
    assert (resumed.status, resumed.pause_reason) == (WatchStatus.ACTIVE, None)


# -- state and changes ------------------------------------------------------------------------------------------


def test_known_state_round_trip(store: WatchStore) -> None:
    watch, _ = start(store)
    assert store.known_state(watch.id) == {}
    stamp = datetime(2026, 11, 27, 11, 59, 58, 123456, tzinfo=UTC)
    state = {
        "da1": AlertState("New", None, stamp),
        "da2": AlertState("Resolved", "bob@contoso.com", None),
    }
    assert store.record_check(watch.id, state, [], T0) is None  # no changes: no check id
    assert store.known_state(watch.id) == state
    checked = store.watch(watch.id)
    assert checked is not None
    assert checked.last_checked_at == T0

    # A later check only carries the alerts it saw; the others are kept as they were.
    later = stamp + timedelta(minutes=5)
    store.record_check(watch.id, {"da1": AlertState("InProgress", "amy@contoso.com", later)}, [], T0)
    assert store.known_state(watch.id) == {
        "da1": AlertState("InProgress", "amy@contoso.com", later),
        "da2": AlertState("Resolved", "bob@contoso.com", None),
    }


def test_state_is_per_watch(store: WatchStore) -> None:
    a, _ = start(store, "C1")
    b, _ = start(store, "C2")
    store.record_check(a.id, {"da1": AlertState("New", None, T0)}, [], T0)
    assert store.known_state(b.id) == {}


def test_record_check_is_atomic(store: WatchStore, monkeypatch: pytest.MonkeyPatch) -> None:
    watch, _ = start(store)
    before = {"da1": AlertState("New", None, T0)}
    store.record_check(watch.id, before, [], T0)

    real = Change.to_json

    def explode_on_second(change: Change) -> dict[str, Any]:
        if change.alert_id == "da2":
            raise RuntimeError("crash while writing the second change")
        return real(change)

    monkeypatch.setattr(Change, "to_json", explode_on_second)
    after = {"da1": AlertState("InProgress", "bob", T0 + timedelta(minutes=1)), "da2": AlertState("New", None, T0)}
    changes = [status("da1", "New", "InProgress", "t1"), new("da2")]
    with pytest.raises(RuntimeError, match="second change"):
        store.record_check(watch.id, after, changes, T0 + timedelta(minutes=1))

    # Neither the state, nor the first change, nor the check time were kept.
    assert store.known_state(watch.id) == before
    assert store.pending_replies() == []
    unchanged = store.watch(watch.id)
    assert unchanged is not None
    assert unchanged.last_checked_at == T0

    monkeypatch.setattr(Change, "to_json", real)
    check_id = store.record_check(watch.id, after, changes, T0 + timedelta(minutes=1))  # the retry succeeds whole
    assert check_id is not None
    assert store.known_state(watch.id) == after
    [reply] = store.pending_replies()
    assert reply.changes == tuple(changes)


def test_the_same_change_is_recorded_once(store: WatchStore) -> None:
    watch, _ = start(store)
    change = new("da1")
    first = store.record_check(watch.id, {}, [change], T0)
    assert first is not None
    assert store.record_check(watch.id, {}, [change], T0) is None  # a re-check after a crash finds it again
    [reply] = store.pending_replies()
    assert (reply.check_id, reply.changes) == (first, (change,))

    # Partly new: only the new change is recorded, under a new check.
    other = status("da1", "New", "InProgress", "2026-11-27T12:05:00+00:00")
    second = store.record_check(watch.id, {}, [change, other], T0)
    assert second is not None
    assert second != first
    replies = store.pending_replies()
    assert [(r.check_id, r.changes) for r in replies] == [(first, (change,)), (second, (other,))]


def test_same_change_key_in_another_watch_is_its_own_change(store: WatchStore) -> None:
    a, _ = start(store, "C1")
    b, _ = start(store, "C2")
    assert store.record_check(a.id, {}, [new("da1")], T0) is not None
    assert store.record_check(b.id, {}, [new("da1")], T0) is not None
    assert [r.watch_id for r in store.pending_replies()] == [a.id, b.id]


def test_status_flapping_is_recorded_each_time(store: WatchStore) -> None:
    watch, _ = start(store)
    flips = [
        status("da1", "New", "InProgress", "2026-11-27T12:01:00+00:00"),
        status("da1", "InProgress", "New", "2026-11-27T12:02:00+00:00"),
        status("da1", "New", "InProgress", "2026-11-27T12:03:00+00:00"),
    ]
    ids = [store.record_check(watch.id, {}, [flip], T0) for flip in flips]
    assert None not in ids
    assert [r.changes for r in store.pending_replies()] == [(flip,) for flip in flips]


def test_pending_replies_group_changes_by_check_in_order(store: WatchStore) -> None:
    a, _ = start(store, "C1")
    b, _ = start(store, "C2")
    c1 = store.record_check(a.id, {}, [new("da1"), new("da2"), new("da3")], T0)
    c2 = store.record_check(b.id, {}, [new("db1")], T0)
    c3 = store.record_check(a.id, {}, [status("da1", "New", "Resolved", "t2"), new("da4")], T0)
    assert c1 is not None and c2 is not None and c3 is not None
    assert c1 < c2 < c3
    replies = store.pending_replies()
    assert [(r.watch_id, r.check_id) for r in replies] == [(a.id, c1), (b.id, c2), (a.id, c3)]
    assert [[ch.alert_id for ch in r.changes] for r in replies] == [["da1", "da2", "da3"], ["db1"], ["da1", "da4"]]
    assert all(r.attempted_at is None for r in replies)
    assert replies[0].reference == f"{a.id}:{c1}"


def test_changes_survive_the_json_round_trip(store: WatchStore) -> None:
    watch, _ = start(store)
    change = Change(
        ChangeKind.STATUS,
        "da637_-12",
        title="<!channel> 'quoted' \u202e",
        severity="High",
        category="Malware",
        old="InProgress",
        new="Resolved",
        classification="TruePositive",
        determination="Malware",
        at="2026-11-27T12:00:00.123456+00:00",
    )
    store.record_check(watch.id, {}, [change], T0)
    [reply] = store.pending_replies()
    assert reply.changes == (change,)


def test_mark_attempted_then_posted(store: WatchStore) -> None:
    watch, _ = start(store)
    first = store.record_check(watch.id, {}, [new("da1"), new("da2")], T0)
    second = store.record_check(watch.id, {}, [new("da3")], T0)
    one, _ = store.pending_replies()
    attempt = T0 + timedelta(seconds=5)
    store.mark_attempted(one, attempt)
    one_again, two_again = store.pending_replies()
    assert (one_again.check_id, one_again.attempted_at) == (first, attempt)
    assert (two_again.check_id, two_again.attempted_at) == (second, None)

    store.mark_posted(one_again, "1700000000.000100")
    [left] = store.pending_replies()
    assert (left.check_id, left.changes) == (second, (new("da3"),))
    store.mark_posted(left, "1700000000.000101")
    assert store.pending_replies() == []
    # A posted change is still remembered: the same change cannot be recorded (and posted) again.
    assert store.record_check(watch.id, {}, [new("da1")], T0) is None


# -- meta and the lease -----------------------------------------------------------------------------------------


def test_meta(store: WatchStore) -> None:
    assert store.get_meta("watermark") is None
    store.set_meta("watermark", "2026-11-27T12:00:00+00:00")
    store.set_meta("other", "1")
    store.set_meta("watermark", "2026-11-27T12:01:00+00:00")
    assert store.get_meta("watermark") == "2026-11-27T12:01:00+00:00"
    assert store.get_meta("other") == "1"


def test_lease(store: WatchStore) -> None:
    assert store.try_lease("A", now=1000.0, ttl=150.0) is True
    assert store.try_lease("B", now=1001.0, ttl=150.0) is False
    assert store.try_lease("A", now=1100.0, ttl=150.0) is True  # renewed until 1250
    assert store.try_lease("B", now=1200.0, ttl=150.0) is False  # A's first term (1150) is over, the renewal is not
    assert store.try_lease("B", now=1250.0, ttl=150.0) is True  # expired: B takes over
    assert store.try_lease("A", now=1251.0, ttl=150.0) is False
    store.release_lease("A")  # not the holder: nothing happens
    assert store.try_lease("A", now=1252.0, ttl=150.0) is False
    store.release_lease("B")
    assert store.try_lease("A", now=1253.0, ttl=150.0) is True  # released: no need to wait for expiry


# -- two processes on one store --------------------------------------------------------------------------------


def test_two_stores_on_the_same_data_see_each_others_writes(backend: Opener) -> None:
    one, two = backend(), backend()
    watch, created = start(one)
    assert created is True
    again, created = start(two)  # the second process extends the first one's watch
    assert (again.id, created) == (watch.id, False)

    check = one.record_check(watch.id, {"da1": AlertState("New", None, T0)}, [new("da1")], T0)
    assert check is not None
    assert two.known_state(watch.id) == {"da1": AlertState("New", None, T0)}
    [reply] = two.pending_replies()
    assert two.record_check(watch.id, {}, [new("da1")], T0) is None  # one change key for both
    two.mark_posted(reply, "1.2")
    assert one.pending_replies() == []

    one.set_meta("watermark", "w")
    assert two.get_meta("watermark") == "w"

    assert one.try_lease("process-1", now=0.0, ttl=150.0) is True
    assert two.try_lease("process-2", now=10.0, ttl=150.0) is False
    assert one.try_lease("process-1", now=100.0, ttl=150.0) is True
    assert two.try_lease("process-2", now=200.0, ttl=150.0) is False
    assert two.try_lease("process-2", now=251.0, ttl=150.0) is True  # process-1 stopped renewing
    assert one.try_lease("process-1", now=252.0, ttl=150.0) is False


def test_concurrent_identical_checks_from_four_processes_record_one_change(backend: Opener) -> None:
    stores: queue.SimpleQueue[WatchStore] = queue.SimpleQueue()
    opened = [backend() for _ in range(4)]
    for each in opened:
        stores.put(each)
    watch, _ = start(opened[0])
    outcomes = run_concurrently(4, lambda: stores.get().record_check(watch.id, {}, [new("da1"), new("da2")], T0))
    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    assert sum(o is not None for o in outcomes) == 1
    [reply] = opened[0].pending_replies()
    assert [c.alert_id for c in reply.changes] == ["da1", "da2"]


def test_concurrent_lease_attempts_have_one_winner(backend: Opener) -> None:
    holders: queue.SimpleQueue[tuple[str, WatchStore]] = queue.SimpleQueue()
    for n in range(4):
        holders.put((f"holder-{n}", backend()))

    def attempt() -> bool:
        name, mine = holders.get()
        return mine.try_lease(name, now=0.0, ttl=60.0)

    outcomes = run_concurrently(4, attempt)
    assert sorted(outcomes, key=str) == [False, False, False, True]


def test_the_database_file_and_its_wal_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteWatchStore(path)
    try:
        store.set_meta("watermark", "2026-11-27T12:00:00+00:00")  # a write: the -wal file now exists
        for name in ("state.db", "state.db-wal"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    finally:
        store.close()


def test_redis_tells_each_process_once_that_its_data_was_lost() -> None:
    require_redis()
    prefix = unique_prefix()
    connections = [RedisConnection(url_with_prefix(prefix)) for _ in range(3)]
    one, two, later = (RedisWatchStore(c) for c in connections)
    try:
        assert (one.lost_data(), two.lost_data()) == (False, False)  # the first call takes note
        start(one)
        assert (one.lost_data(), two.lost_data()) == (False, False)
        delete_prefix(prefix)  # as FLUSHDB would, on this test's keys only
        assert later.lost_data() is False  # a process started after the loss knows nothing else
        assert (one.lost_data(), two.lost_data()) == (True, True)  # though the later one wrote a new token first
        assert (one.lost_data(), two.lost_data()) == (False, False)  # said once
    finally:
        for connection in connections:
            connection.close()
        delete_prefix(prefix)
