"""`AcceptedWork`: acknowledged commands recorded until answered, renewed while this process lives, taken over
(once) when their process is gone, and dropped once their response_url has expired."""

from __future__ import annotations

import logging

import pytest

from bot.access.policy import Requester
from bot.slack.recovery import RESPONSE_URL_LIFETIME, AcceptedWork, requester_of
from bot.state.work import AcceptedCommand, MemoryWorkStore, Origin

URL = "https://hooks.slack.com/commands/T0/1/capability"
ALICE = Requester("T0", "C0INCIDENT", "U0ALICE", user_team_id="T0", shared_channel=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_live_processs_commands_are_renewed_and_never_taken_over() -> None:
    store, clock = MemoryWorkStore(), Clock()
    mine = AcceptedWork(store, takeover=15, clock=clock)
    other = AcceptedWork(store, takeover=15, clock=clock)
    command_id = mine.accept(ALICE, "ws-fin-014", URL)
    for _ in range(10):  # a long lookup: a minute and more
        clock.now += 5
        assert mine.recover_once(lambda command: pytest.fail("its own command")) == 0
        assert other.recover_once(lambda command: pytest.fail("a live process's command")) == 0
    mine.finish(command_id)
    assert store.pending() == 0


def test_a_dead_processs_command_is_taken_over_by_one_process_with_who_asked_where() -> None:
    store, clock = MemoryWorkStore(), Clock()
    AcceptedWork(store, takeover=15, clock=clock).accept(ALICE, "ws-fin-014", URL)  # then it dies
    first, second = (AcceptedWork(store, takeover=15, clock=clock) for _ in range(2))
    clock.now += 16
    answered: list[AcceptedCommand] = []
    assert first.recover_once(lambda command: answered.append(command) or True) == 1
    assert second.recover_once(lambda command: pytest.fail("taken twice")) == 0
    [command] = answered
    assert (command.text, command.response_url, requester_of(command)) == ("ws-fin-014", URL, ALICE)
    for _ in range(12):  # the taker lives and renews its claim while it answers
        clock.now += 5
        assert first.recover_once(lambda command: pytest.fail("its own")) == 0
        assert second.recover_once(lambda command: pytest.fail("taken twice")) == 0


def test_a_command_past_its_response_urls_lifetime_is_dropped_with_a_log_line_without_the_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, clock = MemoryWorkStore(), Clock()
    AcceptedWork(store, takeover=15, clock=clock).accept(ALICE, "ws-fin-014", URL)
    clock.now += RESPONSE_URL_LIFETIME
    with caplog.at_level(logging.WARNING):
        AcceptedWork(store, takeover=15, clock=clock).recover_once(lambda command: pytest.fail("expired"))
    assert store.pending() == 0
    assert "response_url has expired" in caplog.text
    assert URL not in caplog.text


def test_a_command_the_pool_cannot_take_is_taken_again_later() -> None:
    store, clock = MemoryWorkStore(), Clock()
    AcceptedWork(store, takeover=15, clock=clock).accept(ALICE, "ws-fin-014", URL)
    survivor = AcceptedWork(store, takeover=15, clock=clock)
    clock.now += 16
    assert survivor.recover_once(lambda command: False) == 1  # busy
    clock.now += 16
    answered: list[str] = []
    assert survivor.recover_once(lambda command: answered.append(command.id) or True) == 1
    assert len(answered) == 1


def test_a_command_whose_answer_fails_is_not_kept_renewed_forever(caplog: pytest.LogCaptureFixture) -> None:
    store, clock = MemoryWorkStore(), Clock()
    AcceptedWork(store, takeover=15, clock=clock).accept(ALICE, "ws-fin-014", URL)
    survivor = AcceptedWork(store, takeover=15, clock=clock)
    clock.now += 16

    def failing(command: AcceptedCommand) -> bool:
        raise RuntimeError("the membership check could not be made")

    with caplog.at_level(logging.ERROR):
        assert survivor.recover_once(failing) == 1
    assert "trying again later" in caplog.text and URL not in caplog.text
    clock.now += 16  # not renewed: taken again
    assert survivor.recover_once(lambda command: True) == 1


def test_a_mention_is_taken_over_with_its_thread_and_one_too_old_is_dropped_without_an_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, clock = MemoryWorkStore(), Clock()
    dead = AcceptedWork(store, takeover=15, clock=clock)
    dead.accept(ALICE, "ws-fin-014", origin=Origin.MENTION, thread_ts="1700000000.000100")
    clock.now += 16
    answered: list[AcceptedCommand] = []
    assert AcceptedWork(store, takeover=15, clock=clock).recover_once(lambda c: answered.append(c) or False) == 1
    [mention] = answered  # not answered (the pool was full): taken again later
    assert (mention.origin, mention.thread_ts, mention.response_url) == (Origin.MENTION, "1700000000.000100", "")
    clock.now += RESPONSE_URL_LIFETIME
    with caplog.at_level(logging.WARNING):
        AcceptedWork(store, takeover=15, clock=clock).recover_once(lambda command: pytest.fail("too old"))
    assert store.pending() == 0
    assert "dropped a mention acknowledged at" in caplog.text and "too late to answer" in caplog.text
