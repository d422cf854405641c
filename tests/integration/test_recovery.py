"""Commands a stopped process acknowledged, answered by this one (`Listeners.answer_accepted`) through the real
Bolt app, gate, pool and poster: access is checked again when they are answered, and fails closed. Slash
commands are answered through their response_url, mentions and DMs in their thread."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from bot.state.work import AcceptedCommand, Origin
from bot.state.work_sqlite import SqliteWorkStore
from tests.doubles.slack import harness, header

FIN_014 = "ws-fin-014.contoso.local"


def test_left_commands_are_answered_after_checking_access_again(tmp_path: Path) -> None:
    """Two lookups a dead process acknowledged: Bob may still use the bot and gets his card; Alice was removed
    from `BOT_ALLOWED_USERS` since, and gets the refusal, not the card."""
    state_url = f"sqlite:///{tmp_path}/state.db"
    for rig in harness(env={"BOT_ALLOWED_USERS": "U0BOB"}, state_url=state_url):
        left = SqliteWorkStore(state_url)  # what the dead process wrote; its claims have run out
        for user in ("U0BOB", "U0ALICE"):
            url = rig.standin.response_url(f"left-{user}")
            team = rig.requests.team_id
            command = AcceptedCommand(user, "ws-fin-014", url, team, "C0INCIDENT", user, None, None, False, time.time())
            left.record(command, claim_until=0.0)
        assert rig.bot.accepted.recover_once(rig.bot.listeners.answer_accepted) == 2
        rig.wait_idle()
        posts = {p.target: p for p in rig.standin.wait_for_posts(2)}
        assert header(posts["left-U0BOB"]).startswith(f"{FIN_014} · ")
        assert (
            posts["left-U0ALICE"].payload["text"].startswith("You are not on this bot's list of people who may use it.")
        )
        assert left.claim_due(now=time.time() + 3600, claim_until=0.0, limit=10) == []  # both done
        left.close()


def accepted_records(state_url: str) -> list[AcceptedCommand]:
    """The records in the state file now, read without claiming them."""
    with sqlite3.connect(state_url.removeprefix("sqlite:///")) as db:
        return [AcceptedCommand.decode(text) for (text,) in db.execute("SELECT command FROM accepted_work")]


def test_a_mention_and_a_dm_are_kept_until_answered_in_their_thread(tmp_path: Path) -> None:
    """Acknowledged (HTTP 200 to the event) is recorded: while the answer is on its way the file holds each, with
    the thread to answer in and no response_url; once posted, neither is left."""
    state_url = f"sqlite:///{tmp_path}/state.db"
    for rig in harness(state_url=state_url):
        rig.standin.hold("chat.postMessage")
        assert rig.event(rig.requests.mention("ws-fin-014", ts="1700000000.000100")).status == 200
        dm = {"type": "message", "channel": "D0ALICE", "channel_type": "im", "user": "U0ALICE",
              "text": "ws-fin-015", "ts": "1700000000.000200"}  # fmt: skip
        assert rig.event(dm).status == 200
        kept = {(r.origin, r.channel_id, r.thread_ts, r.text, r.response_url) for r in accepted_records(state_url)}
        assert kept == {
            (Origin.MENTION, "C0INCIDENT", "1700000000.000100", "ws-fin-014", ""),
            (Origin.DIRECT, "D0ALICE", None, "ws-fin-015", ""),
        }
        rig.standin.release("chat.postMessage")
        posts = rig.standin.wait_for_posts(2)
        rig.wait_idle()
        assert {(p.target, p.payload.get("thread_ts")) for p in posts} == {
            ("C0INCIDENT", "1700000000.000100"),
            ("D0ALICE", None),
        }
        assert accepted_records(state_url) == []


def test_left_mentions_and_dms_are_answered_in_their_thread_after_checking_access_again(tmp_path: Path) -> None:
    """A dead process's mention (Bob, still allowed) and DM (Alice, removed since): Bob's card is posted in the
    mention's thread, Alice gets the refusal seen only by her in her DM, never the card; each once."""
    state_url = f"sqlite:///{tmp_path}/state.db"
    for rig in harness(env={"BOT_ALLOWED_USERS": "U0BOB"}, state_url=state_url):
        left = SqliteWorkStore(state_url)
        team, now = rig.requests.team_id, time.time()
        mention = AcceptedCommand("m1", "ws-fin-014", "", team, "C0INCIDENT", "U0BOB", None, None, False, now,
                                  Origin.MENTION, "1700000000.000300")  # fmt: skip
        dm = AcceptedCommand("d1", "ws-fin-015", "", team, "D0ALICE", "U0ALICE", None, None, False, now, Origin.DIRECT)
        for record in (mention, dm):
            left.record(record, claim_until=0.0)
        assert rig.bot.accepted.recover_once(rig.bot.listeners.answer_accepted) == 2
        rig.wait_idle()
        posts = {p.target: p for p in rig.standin.wait_for_posts(2)}
        card = posts["C0INCIDENT"]
        assert (card.via, card.payload["thread_ts"]) == ("chat.postMessage", "1700000000.000300")
        assert header(card).startswith(f"{FIN_014} · ")
        refusal = posts["D0ALICE"]
        assert (refusal.via, refusal.payload["user"]) == ("chat.postEphemeral", "U0ALICE")
        assert refusal.payload["text"].startswith("You are not on this bot's list of people who may use it.")
        assert left.claim_due(now=time.time() + 3600, claim_until=0.0, limit=10) == []  # both done
        assert rig.bot.accepted.recover_once(rig.bot.listeners.answer_accepted) == 0
        assert len(rig.standin.posts) == 2
        left.close()


def test_a_left_command_the_full_pool_cannot_take_is_kept_and_answered_once_there_is_room(tmp_path: Path) -> None:
    """Before, a taken-over command that met a full pool had its record deleted as if answered: never answered."""
    state_url = f"sqlite:///{tmp_path}/state.db"
    for rig in harness(env={"BOT_WORKERS": "1", "BOT_MAX_PENDING": "0"}, state_url=state_url):
        left = SqliteWorkStore(state_url)
        url = rig.standin.response_url("left")
        team = rig.requests.team_id
        left.record(
            AcceptedCommand("c1", "ws-fin-014", url, team, "C0INCIDENT", "U0ALICE", None, None, False, time.time()),
            claim_until=0.0,
        )
        busy = threading.Event()
        assert rig.bot.pool.submit(busy.wait)  # the only worker is taken
        answer = rig.bot.listeners.answer_accepted
        assert rig.bot.accepted.recover_once(answer) == 1  # taken, but the pool refused it
        assert [r.id for r in accepted_records(state_url)] == ["c1"]  # kept: its claim lapses, it is taken again
        busy.set()
        rig.wait_idle()
        [command] = left.claim_due(now=time.time() + 3600, claim_until=0.0, limit=10)  # as once its claim lapsed
        assert rig.bot.listeners.answer_accepted(command)
        rig.wait_idle()
        [card] = rig.standin.wait_for_posts(1)
        assert (card.target, header(card).startswith(f"{FIN_014} · ")) == ("left", True)
        assert accepted_records(state_url) == []
        left.close()
