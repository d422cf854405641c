"""Modal limits, and a checker that tells whether a `views.open` view respects them.

Slack refuses a view that breaks any of them (`invalid_arguments`), and the click that opened it cannot be
retried: its `trigger_id` is single-use and expires 3 s after the click. So the renderers stay inside these
limits for any input, `view_violations` proves it in tests, and the Slack stand-in refuses what Slack would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bot.slack.blockkit import MAX_OPTION_TEXT, Block, block_violations, option_violations

View = dict[str, Any]

MAX_MODAL_BLOCKS = 100
MAX_VIEW_TITLE = 24  # title, submit and close texts
MAX_PRIVATE_METADATA = 3000
MAX_CALLBACK_ID = 255
MAX_INPUT_LABEL = 2000
MAX_INPUT_LENGTH = 3000  # plain_text_input max_length
MAX_SELECT_OPTIONS = 100
MAX_RADIO_OPTIONS = 10


def _plain(value: Any, limit: int, where: str, *, required: bool = True) -> Iterator[str]:
    if value is None and not required:
        return
    if not isinstance(value, dict) or value.get("type") != "plain_text":
        yield f"{where}: must be a plain_text object"
        return
    if not 1 <= len(str(value.get("text", ""))) <= limit:
        yield f"{where}: text must be 1-{limit} characters"


def _input_element(element: Block, where: str) -> Iterator[str]:
    kind = element.get("type")
    if kind == "plain_text_input":
        limit = element.get("max_length", MAX_INPUT_LENGTH)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_INPUT_LENGTH:
            yield f"{where}: max_length must be 1-{MAX_INPUT_LENGTH}"
    elif kind == "radio_buttons":
        options = element.get("options", [])
        if not 1 <= len(options) <= MAX_RADIO_OPTIONS:
            yield f"{where}: {len(options)} radio options"
        yield from option_violations(options, where)
    elif kind == "static_select":
        groups = element.get("option_groups")
        options = [o for g in groups for o in g.get("options", [])] if groups else element.get("options", [])
        if not 1 <= len(options) <= MAX_SELECT_OPTIONS:
            yield f"{where}: {len(options)} select options"
        for index, group in enumerate(groups or []):
            yield from _plain(group.get("label"), MAX_OPTION_TEXT, f"{where}.option_groups[{index}].label")
        yield from option_violations(options, where)
    else:
        yield f"{where}: unexpected input element {kind!r}"
    if not 1 <= len(str(element.get("action_id", ""))) <= 255:
        yield f"{where}: action_id length"


def _modal_block(block: Block, where: str) -> Iterator[str]:
    if block.get("type") == "input":
        yield from _plain(block.get("label"), MAX_INPUT_LABEL, f"{where}.label")
        yield from _plain(block.get("hint"), MAX_INPUT_LABEL, f"{where}.hint", required=False)
        yield from _input_element(block.get("element") or {}, f"{where}.element")
    else:
        yield from block_violations(block, where)


def view_violations(view: View) -> list[str]:
    """Every modal limit the view breaks; empty when `views.open` will accept it."""
    found: list[str] = []
    if view.get("type") != "modal":
        found.append("view type must be modal")
    found += _plain(view.get("title"), MAX_VIEW_TITLE, "title")
    for key in ("submit", "close"):
        found += _plain(view.get(key), MAX_VIEW_TITLE, key, required=False)
    if any(b.get("type") == "input" for b in view.get("blocks", [])) and view.get("submit") is None:
        found.append("submit: required when the view has input blocks")
    blocks = view.get("blocks", [])
    if not 1 <= len(blocks) <= MAX_MODAL_BLOCKS:
        found.append(f"{len(blocks)} blocks")
    if len(str(view.get("private_metadata", ""))) > MAX_PRIVATE_METADATA:
        found.append(f"private_metadata over {MAX_PRIVATE_METADATA} characters")
    if len(str(view.get("callback_id", ""))) > MAX_CALLBACK_ID:
        found.append(f"callback_id over {MAX_CALLBACK_ID} characters")
    for index, block in enumerate(blocks):
        found += _modal_block(block, f"blocks[{index}]")
    return found
