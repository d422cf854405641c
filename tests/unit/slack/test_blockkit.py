"""`violations`: each of Slack's Block Kit limits, broken one at a time and kept at the edge."""

from __future__ import annotations

from typing import Any

import pytest

from bot.slack.blockkit import MAX_TOTAL_TEXT, Block, Message, block_text_length, violations


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _button(**extra: Any) -> Block:
    return {"type": "button", "text": {"type": "plain_text", "text": "Go"}, "action_id": "a", **extra}


def _fields(count: int, length: int = 5) -> Block:
    return {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * length}] * count}


def _context_of(count: int, length: int = 5) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": "c" * length}] * count}


def _actions_of(*elements: Block) -> Block:
    return {"type": "actions", "elements": list(elements)}


def _header(text: str, kind: str = "plain_text") -> Block:
    return {"type": "header", "text": {"type": kind, "text": text}}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (Message("t", [_section("s")] * 51), "51 blocks"),
        (Message("t", [_section("s" * 3001)]), "blocks[0]: section text length 3001"),
        (Message("t", [_section("")]), "blocks[0]: section text length 0"),
        (Message("t", [{"type": "section"}]), "blocks[0]: section needs text or fields"),
        (Message("t", [_header("h" * 151)]), "blocks[0]: header must be plain_text of 1-150 characters"),
        (Message("t", [_header("")]), "blocks[0]: header must be plain_text of 1-150 characters"),
        (Message("t", [_header("h", "mrkdwn")]), "blocks[0]: header must be plain_text of 1-150 characters"),
        (Message("t", [_fields(11)]), "blocks[0]: 11 fields"),
        (Message("t", [_fields(1, 2001)]), "blocks[0]: field text length 2001"),
        (Message("t", [_context_of(11)]), "blocks[0]: 11 context elements"),
        (Message("t", [_context_of(0)]), "blocks[0]: 0 context elements"),
        (Message("t", [_context_of(1, 3001)]), "blocks[0]: context text length 3001"),
        (Message("t", [_actions_of(*[_button()] * 26)]), "blocks[0]: 26 actions elements"),
        (Message("t", [_actions_of()]), "blocks[0]: 0 actions elements"),
        (
            Message("t", [_actions_of(_button(text={"type": "plain_text", "text": "b" * 76}))]),
            "blocks[0].elements[0]: button text length 76",
        ),
        (
            Message("t", [_actions_of(_button(text={"type": "plain_text", "text": ""}))]),
            "blocks[0].elements[0]: button text length 0",
        ),
        (Message("t", [_actions_of(_button(value="v" * 2001))]), "blocks[0].elements[0]: button value over 2000"),
        (Message("t", [_actions_of(_button(action_id="a" * 256))]), "blocks[0].elements[0]: action_id length"),
        (Message("t", [_actions_of(_button(action_id=""))]), "blocks[0].elements[0]: action_id length"),
        (Message("t", [_actions_of(_button(url="https://x/" + "u" * 2991))]), "blocks[0].elements[0]: url over 3000"),
        (
            Message("t", [{**_section("s"), "accessory": _button(value="v" * 2001)}]),
            "blocks[0].accessory: button value over 2000",
        ),
        (Message("t", [_section("s" * 2500)] * 5), "12500 characters of block text"),
        (Message("", [_section("s")]), "fallback text is empty"),
        (Message(" \n ", [_section("s")]), "fallback text is empty"),
        (Message("t" * 4001, [_section("s")]), "fallback text length 4001"),
        (
            Message("t", [{"type": "image", "image_url": "https://x/y.png", "alt_text": "y"}]),
            "blocks[0]: unexpected block type 'image'",
        ),
    ],
)
def test_violations_detects_each_broken_limit(message: Message, expected: str) -> None:
    assert expected in violations(message)


def test_violations_accepts_everything_at_the_limits() -> None:
    blocks: list[Block] = [
        _header("h" * 150),
        _section("s" * 3000),
        _fields(10, 2000),
        _context_of(10, 10),
        _actions_of(
            _button(text={"type": "plain_text", "text": "b" * 75}, value="v" * 2000, action_id="a" * 255),
            *[_button(url="https://x/" + "u" * 2990)] * 24,
        ),
        {"type": "divider"},
    ]
    blocks += [{"type": "divider"}] * (50 - len(blocks))
    message = Message("t" * 4000, blocks)
    assert len(message.blocks) == 50
    assert block_text_length(message.blocks) == 150 + 3000 + 20_000 + 100 + 75 + 24 * 2 > MAX_TOTAL_TEXT
    found = violations(message)
    assert found == [f"{block_text_length(message.blocks)} characters of block text"]
    trimmed = Message("t", [_header("h" * 150), _section("s" * 3000), _fields(4, 2000), _section("x" * 850)])
    assert block_text_length(trimmed.blocks) == 12_000
    assert violations(trimmed) == []


def test_block_text_length_counts_nested_text() -> None:
    blocks = [_header("abc"), _context_of(2, 4), _actions_of(_button(value="not counted")), _section("12345")]
    assert block_text_length(blocks) == 3 + 8 + 2 + 5
