"""Block Kit limits, and a checker that tells whether a message respects them.

Slack rejects a message that breaks any limit (`invalid_blocks`, `msg_blocks_too_long`), and slack_sdk
checks only some of them, only on its model objects. The renderers are written to stay inside these
limits for any input; `violations()` verifies that in tests and guards every message before it is sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Block = dict[str, Any]

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_ACTION_ID = 255
MAX_URL = 3000
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
OVERFLOW_OPTIONS = (2, 5)  # an overflow menu holds 2-5 options
# Documented limits allow more, but Slack has refused messages at about 13k characters of block text.
MAX_TOTAL_TEXT = 12_000
MAX_FALLBACK_TEXT = 4000  # Slack truncates at 40,000; notifications show far less


@dataclass(frozen=True, slots=True)
class Message:
    """What the bot posts: Block Kit blocks plus the fallback text notifications and screen readers use."""

    text: str
    blocks: list[Block] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


def _texts(block: Block) -> Iterator[str]:
    """Every text string inside a block, wherever it sits."""
    for key, value in block.items():
        if key == "text" and isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            yield from _texts(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    yield from _texts(item)


def block_text_length(blocks: list[Block]) -> int:
    """Characters of text in the blocks, counted the way Slack's message size limit counts them."""
    return sum(len(t) for block in blocks for t in _texts(block))


def option_violations(options: list[Block], where: str) -> Iterator[str]:
    for index, option in enumerate(options):
        if not 1 <= len(option.get("text", {}).get("text", "")) <= MAX_OPTION_TEXT:
            yield f"{where}.options[{index}]: option text length"
        if not 1 <= len(option.get("value", "")) <= MAX_OPTION_VALUE:
            yield f"{where}.options[{index}]: option value length {len(option.get('value', ''))}"


def _element_violations(element: Block, where: str) -> Iterator[str]:
    if element.get("type") == "overflow":
        options = element.get("options", [])
        if not OVERFLOW_OPTIONS[0] <= len(options) <= OVERFLOW_OPTIONS[1]:
            yield f"{where}: overflow with {len(options)} options"
        yield from option_violations(options, where)
        return
    if element.get("type") != "button":
        return
    label = element.get("text", {}).get("text", "")
    if not 1 <= len(label) <= MAX_BUTTON_TEXT:
        yield f"{where}: button text length {len(label)}"
    if len(element.get("value", "")) > MAX_BUTTON_VALUE:
        yield f"{where}: button value over {MAX_BUTTON_VALUE}"
    if not 1 <= len(element.get("action_id", "x")) <= MAX_ACTION_ID:
        yield f"{where}: action_id length"
    if len(element.get("url", "")) > MAX_URL:
        yield f"{where}: url over {MAX_URL}"


def _block_violations(block: Block, where: str) -> Iterator[str]:
    kind = block.get("type")
    if kind == "header":
        header = block["text"]["text"]
        if block["text"].get("type") != "plain_text" or not 1 <= len(header) <= MAX_HEADER_TEXT:
            yield f"{where}: header must be plain_text of 1-{MAX_HEADER_TEXT} characters"
    elif kind == "section":
        section_text = block.get("text", {}).get("text")
        fields = block.get("fields", [])
        if section_text is None and not fields:
            yield f"{where}: section needs text or fields"
        if section_text is not None and not 1 <= len(section_text) <= MAX_SECTION_TEXT:
            yield f"{where}: section text length {len(section_text)}"
        if len(fields) > MAX_FIELDS:
            yield f"{where}: {len(fields)} fields"
        for item in fields:
            if not 1 <= len(item.get("text", "")) <= MAX_FIELD_TEXT:
                yield f"{where}: field text length {len(item.get('text', ''))}"
        if "accessory" in block:
            yield from _element_violations(block["accessory"], f"{where}.accessory")
    elif kind == "context":
        elements = block.get("elements", [])
        if not 1 <= len(elements) <= MAX_CONTEXT_ELEMENTS:
            yield f"{where}: {len(elements)} context elements"
        for element in elements:
            if element.get("type") in ("mrkdwn", "plain_text") and not 1 <= len(element["text"]) <= MAX_SECTION_TEXT:
                yield f"{where}: context text length {len(element['text'])}"
    elif kind == "actions":
        elements = block.get("elements", [])
        if not 1 <= len(elements) <= MAX_ACTIONS_ELEMENTS:
            yield f"{where}: {len(elements)} actions elements"
        for index, element in enumerate(elements):
            yield from _element_violations(element, f"{where}.elements[{index}]")
    elif kind != "divider":
        yield f"{where}: unexpected block type {kind!r}"


def violations(message: Message) -> list[str]:
    """Every Block Kit limit the message breaks; empty when Slack will accept it."""
    found: list[str] = []
    if not message.text.strip():
        found.append("fallback text is empty")
    if len(message.text) > MAX_FALLBACK_TEXT:
        found.append(f"fallback text length {len(message.text)}")
    if len(message.blocks) > MAX_BLOCKS:
        found.append(f"{len(message.blocks)} blocks")
    for index, block in enumerate(message.blocks):
        found.extend(_block_violations(block, f"blocks[{index}]"))
    total = block_text_length(message.blocks)
    if total > MAX_TOTAL_TEXT:
        found.append(f"{total} characters of block text")
    return found


def block_violations(block: Block, where: str) -> list[str]:
    """The limits one message-style block breaks (modals check their own block kinds around it)."""
    return list(_block_violations(block, where))
