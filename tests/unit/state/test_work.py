"""The store of acknowledged commands (`bot.state.work`), the same contract on memory, a SQLite file and Redis:
a record is kept until done, its claim is renewed while its process lives, and a claim that ran out is handed
to exactly one caller."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.state.redis.work import RedisWorkStore
from bot.state.work import AcceptedCommand, MemoryWorkStore, Origin, WorkStore
from bot.state.work_sqlite import SqliteWorkStore
from tests.doubles.redis import shared_state

URL = "https://hooks.slack.com/commands/T0/1/secret"


def command(number: int, accepted_at: float = 1000.0) -> AcceptedCommand:
    return AcceptedCommand(
        f"c{number}", f"ws-fin-0{number}", URL, "T0", "C0INCIDENT", "U0ALICE", None, None, False, accepted_at
    )


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WorkStore]:
    if request.param == "memory":
        yield MemoryWorkStore()
    elif request.param == "sqlite":
        sqlite = SqliteWorkStore(f"sqlite:///{tmp_path}/state.db")
        yield sqlite
        sqlite.close()
    else:
        with shared_state() as shared:
            yield RedisWorkStore(shared)


def test_a_live_claim_is_not_handed_out_and_a_lapsed_one_is_handed_out_once(store: WorkStore) -> None:
    store.record(command(1), claim_until=1010.0)
    store.record(command(2), claim_until=1020.0)
    assert store.claim_due(now=1005.0, claim_until=1100.0, limit=10) == []  # both processes alive
    assert store.claim_due(now=1015.0, claim_until=1100.0, limit=10) == [command(1)]  # the first one's died
    assert store.claim_due(now=1015.0, claim_until=1100.0, limit=10) == []  # claimed: not handed out again
    later = store.claim_due(now=1101.0, claim_until=1200.0, limit=10)  # the taker died too: both lapsed
    assert sorted(c.id for c in later) == ["c1", "c2"]


def test_renewal_keeps_a_claim_and_done_forgets_the_command(store: WorkStore) -> None:
    store.record(command(1), claim_until=1010.0)
    store.renew(["c1", "unknown"], claim_until=1050.0)
    assert store.claim_due(now=1020.0, claim_until=1100.0, limit=10) == []
    store.done("c1")
    assert store.claim_due(now=5000.0, claim_until=6000.0, limit=10) == []


def test_two_callers_racing_for_lapsed_work_share_it_without_overlap(store: WorkStore) -> None:
    for number in range(20):
        store.record(command(number), claim_until=1000.0)
    taken: list[list[str]] = [[], []]

    def take(slot: int) -> None:
        for _ in range(10):
            taken[slot] += [c.id for c in store.claim_due(now=1001.0, claim_until=2000.0, limit=3)]

    threads = [threading.Thread(target=take, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken[0] + taken[1]) == sorted(f"c{n}" for n in range(20))  # each once, none twice


def test_a_record_this_version_cannot_read_is_dropped_not_handed_out(tmp_path: Path) -> None:
    sqlite = SqliteWorkStore(f"sqlite:///{tmp_path}/state.db")
    try:
        sqlite.record(command(1), claim_until=1000.0)
        with sqlite3.connect(tmp_path / "state.db") as other:  # written by another version
            other.execute("UPDATE accepted_work SET command = '{\"unknown\": 1}'")
        assert sqlite.claim_due(now=1001.0, claim_until=2000.0, limit=10) == []
        with sqlite3.connect(tmp_path / "state.db") as other:
            assert other.execute("SELECT count(*) FROM accepted_work").fetchone() == (0,)
    finally:
        sqlite.close()


def test_a_mention_keeps_its_origin_and_thread_and_an_older_record_is_a_slash_command(store: WorkStore) -> None:
    mention = AcceptedCommand(
        "m1", "ws-fin-014", "", "T0", "C0INCIDENT", "U0ALICE", None, None, False, 1000.0, Origin.MENTION, "17.0001"
    )
    store.record(mention, claim_until=1000.0)
    assert store.claim_due(now=1001.0, claim_until=2000.0, limit=10) == [mention]
    older = json.loads(command(1).encode())  # written before mentions and DMs were kept
    del older["origin"], older["thread_ts"]
    assert AcceptedCommand.decode(json.dumps(older)) == command(1)
    with pytest.raises(ValueError, match="carrier-pigeon"):  # a newer version's origin: dropped, never guessed
        AcceptedCommand.decode(json.dumps({**older, "origin": "carrier-pigeon"}))
