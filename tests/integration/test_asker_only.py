"""Bad input, help, an unknown device and "did you mean" are seen only by the person who asked.

Slash command: the acknowledgement or an ephemeral `response_url` answer. A mention in a channel:
`chat.postEphemeral` to its author, in the thread. A DM: a normal message (only the asker reads it).
Cards with data keep `BOT_RESPONSE_VISIBILITY`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from bot.demo.standin import Posted
from tests.doubles.slack import Harness, ack_json, all_text, harness, header

QUIET = {"BOT_AUDIT_LOG": "off", "BOT_USER_RATE_PER_MINUTE": "0", "BOT_CHANNEL_RATE_PER_MINUTE": "0"}
TS = "1700000000.004200"


@pytest.fixture(scope="module")
def rig() -> Iterator[Harness]:
    yield from harness(env=QUIET)


@pytest.fixture(scope="module")
def ephemeral_cards() -> Iterator[Harness]:
    yield from harness(env={**QUIET, "BOT_RESPONSE_VISIBILITY": "ephemeral"})


def _next_post(rig: Harness, before: int, expected: str = "") -> Posted:
    """The first message posted after the first `before` ones that contains `expected`."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [p for p in rig.standin.posts[before:] if expected in all_text(p.payload)]
        if found:
            return found[0]
        time.sleep(0.01)
    raise TimeoutError(f"nothing posted with {expected!r}")


def _visible_to_everyone(ack: dict[str, Any]) -> bool:
    return ack.get("response_type") == "in_channel"


# -- slash command ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"), [("ws-fin-014 severity:urgent", "unknown severity"), ("help", "Examples")]
)
def test_slash_bad_input_and_help_are_in_the_ephemeral_ack(rig: Harness, text: str, expected: str) -> None:
    posts = len(rig.standin.posts)
    ack = ack_json(rig.command(text))
    assert expected in all_text(ack)
    assert not _visible_to_everyone(ack)
    assert len(rig.standin.posts) == posts  # nothing posted for the channel


@pytest.mark.parametrize(("text", "expected"), [("ws-fin", "Did you mean"), ("no-such-host", "No device")])
def test_slash_not_found_and_did_you_mean_answer_only_the_asker(rig: Harness, text: str, expected: str) -> None:
    before = len(rig.standin.posts)
    rig.command(text, f"nf-{text}")
    posted = rig.standin.wait_for_posts(before + 1)[before]
    assert expected in all_text(posted.payload)
    assert posted.payload["replace_original"] is False  # Slack cannot replace the ack's note
    assert posted.payload.get("response_type") != "in_channel"


def test_slash_card_with_data_keeps_the_configured_visibility(rig: Harness, ephemeral_cards: Harness) -> None:
    before = len(rig.standin.posts)
    rig.command("ws-fin-014", "card-in-channel")
    posted = _next_post(rig, before)
    assert header(posted).startswith("ws-fin-014")
    assert posted.payload["response_type"] == "in_channel"
    before = len(ephemeral_cards.standin.posts)
    ephemeral_cards.command("ws-fin-014", "card-ephemeral")
    posted = _next_post(ephemeral_cards, before)
    assert header(posted).startswith("ws-fin-014")
    assert posted.payload.get("response_type") != "in_channel"


# -- mention in a channel -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ws-fin-014 since:forever", "since"),  # a bad filter
        ("help", "Examples"),
        ("ws-fin", "Did you mean"),
        ("no-such-host", "No device"),
    ],
)
def test_mention_answers_only_the_asker_in_the_thread(rig: Harness, text: str, expected: str) -> None:
    before = len(rig.standin.posts)
    rig.event(rig.requests.mention(text, ts=TS))
    posted = _next_post(rig, before, expected)
    assert posted.via == "chat.postEphemeral"
    assert (posted.target, posted.payload["user"], posted.payload["thread_ts"]) == ("C0INCIDENT", "U0ALICE", TS)
    assert expected in all_text(posted.payload)


def test_mention_card_with_data_is_posted_in_the_thread(rig: Harness) -> None:
    before = len(rig.standin.posts)
    rig.event(rig.requests.mention("ws-fin-014", ts="1700000000.004300"))
    posted = _next_post(rig, before)
    assert posted.via == "chat.postMessage"
    assert posted.payload["thread_ts"] == "1700000000.004300"
    assert header(posted).startswith("ws-fin-014")


def test_mention_card_stays_with_the_asker_when_cards_are_ephemeral(ephemeral_cards: Harness) -> None:
    """BOT_RESPONSE_VISIBILITY=ephemeral covers mentions too, not just the slash command."""
    rig = ephemeral_cards
    before = len(rig.standin.posts)
    rig.event(rig.requests.mention("ws-fin-014", ts="1700000000.004310"))
    posted = _next_post(rig, before, "ws-fin-014")
    assert (posted.via, posted.payload["user"], posted.payload["thread_ts"]) == (
        "chat.postEphemeral",
        "U0ALICE",
        "1700000000.004310",
    )


@pytest.mark.parametrize(("allow_external", "via"), [("false", "chat.postEphemeral"), ("true", "chat.postMessage")])
def test_a_card_in_a_slack_connect_channel_is_for_the_asker_unless_external_readers_are_allowed(
    allow_external: str, via: str
) -> None:
    """Another organisation reads a shared channel: its card goes to the asker alone unless BOT_ALLOW_EXTERNAL."""
    for rig in harness(env={**QUIET, "BOT_ALLOW_EXTERNAL": allow_external}):
        before = len(rig.standin.posts)
        rig.event(rig.requests.mention("ws-fin-014", ts="1700000000.004320"), shared_channel=True)
        posted = _next_post(rig, before, "ws-fin-014")
        assert posted.via == via
        rig.event(rig.requests.mention("ws-fin-015", ts="1700000000.004330"))  # the same bot, an internal channel
        assert _next_post(rig, before + 1, "ws-fin-015").via == "chat.postMessage"


# -- direct message -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [("ws-fin-014 severity:urgent", "unknown severity"), ("ws-fin", "Did")])
def test_a_dm_gets_a_normal_message_as_only_the_asker_reads_it(rig: Harness, text: str, expected: str) -> None:
    before = len(rig.standin.posts)
    rig.event({"type": "message", "channel": "D0ALICE", "channel_type": "im", "user": "U0ALICE", "text": text,
               "ts": f"1700000000.0045{len(text):02d}"})  # fmt: skip
    posted = _next_post(rig, before, expected)
    assert (posted.via, posted.target) == ("chat.postMessage", "D0ALICE")
    assert expected in all_text(posted.payload)
