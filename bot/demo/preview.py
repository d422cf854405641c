"""Block Kit messages as plain terminal text, roughly as a person would see them in Slack (for the demo).

mrkdwn becomes display text: links become `label [n]` with the URLs listed under the message, date
tokens show their fallback, `*bold*` loses its stars, entities are decoded and emoji become markers.
Every line is cleaned last, after decoding, so alert text can never bring control or format characters
(ANSI escapes, bidi overrides, zero-width characters) into the terminal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from bot.slack.blockkit import Block, Message
from bot.text import clean

BUILDER_URL = "https://app.slack.com/block-kit-builder#"
RULE = "─" * 60
CONTEXT_PREFIX = "┆ "
EXTERNAL = "↗"
# The shortcodes the bot's messages use, as narrow symbols (one column each, so lines keep their width); a
# shortcode in alert text stays as typed.
EMOJI = {
    ":red_circle:": "●",
    ":large_orange_circle:": "●",
    ":large_yellow_circle:": "●",
    ":large_blue_circle:": "●",
    ":white_circle:": "○",
    ":warning:": "⚠",
    ":eyes:": "◉",
    ":hourglass:": "⧗",
    ":arrows_counterclockwise:": "↻",
    ":bust_in_silhouette:": "•",
    ":stop_sign:": "■",
    ":double_vertical_bar:": "‖",
}

# `<target|label>`: links, mentions (`<@U…>`, `<#C…>`, `<!here>`) and date tokens (`<!date^…|fallback>`).
_TOKEN = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_BOLD = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]*?\S)\*(?![\w*])")
_EMOJI = re.compile(r":[a-z0-9_+-]+:")
_ENTITY = re.compile(r"&(amp|lt|gt);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">"}


def _decode(text: str) -> str:
    """Slack's three entities back to characters, in one pass so `&amp;lt;` stays `&lt;`."""
    return _ENTITY.sub(lambda m: _ENTITIES[m[1]], text)


class _Renderer:
    def __init__(self, people: Mapping[str, str]) -> None:
        self.people = people  # user id → display name, for `<@U…>` mentions
        self.links: list[str] = []  # footnote URLs, numbered from 1
        self.buttons: list[tuple[str, str]] = []  # (label, url) of link buttons

    def _token(self, match: re.Match[str]) -> str:
        target, label = match[1], match[2]
        if target.startswith("!date^"):
            return label or "(a date)"
        if target.startswith("!"):  # <!here>, <!channel>, <!subteam^S…|@team>
            return label or "@" + target[1:].split("^")[0]
        if target[:1] == "@" and not label and target[1:] in self.people:
            return "@" + self.people[target[1:]]
        if target[:1] in ("@", "#"):
            return target[0] + (label.lstrip(target[0]) if label else target[1:])
        if not label or label == target:
            return target
        self.links.append(target)
        return f"{label} [{len(self.links)}]"

    def mrkdwn(self, text: str) -> list[str]:
        """Display lines of a mrkdwn string, each cleaned."""
        shown = _TOKEN.sub(self._token, text)
        shown = _BOLD.sub(r"\1", shown)
        shown = _EMOJI.sub(lambda m: EMOJI.get(m[0], m[0]), shown)
        return [clean(line) for line in _decode(shown).split("\n")]

    def text_object(self, item: dict[str, Any]) -> list[str]:
        if item.get("type") == "mrkdwn":
            return self.mrkdwn(str(item.get("text", "")))
        if item.get("type") == "image":
            return [f"[image: {clean(str(item.get('alt_text', '')))}]"]
        return [clean(line) for line in str(item.get("text", "")).split("\n")]

    def button(self, element: dict[str, Any]) -> str:
        label = clean(str(element.get("text", {}).get("text", "")))
        if "url" in element:
            self.buttons.append((label, str(element["url"])))
            return f"[ {label} {EXTERNAL} ]"
        return f"[ {label} ]"

    def block(self, block: Block) -> list[str]:
        kind = block.get("type")
        if kind == "header":
            title = clean(str(block.get("text", {}).get("text", "")))
            return [title, "═" * len(title)]
        if kind == "context":
            return [CONTEXT_PREFIX + line for e in block.get("elements", []) for line in self.text_object(e)]
        if kind == "divider":
            return [RULE]
        if kind == "actions":
            return [" ".join(self.button(e) for e in block.get("elements", []) if e.get("type") == "button")]
        if kind == "section":
            lines = self.text_object(block["text"]) if "text" in block else []
            for item in block.get("fields", []):
                lines += self.text_object(item)
            accessory = block.get("accessory", {})
            if accessory.get("type") == "button":
                lines.append(self.button(accessory))
            elif accessory.get("type") == "overflow":
                labels = " · ".join(clean(str(o.get("text", {}).get("text", ""))) for o in accessory.get("options", []))
                lines.append(f"[ ⋯ {labels} ]")
            return lines
        if kind == "input":
            return self.input(block)
        return [f"[{clean(str(kind))} block]"]

    @staticmethod
    def input(block: Block) -> list[str]:
        """A form field: its label, then its choices (radio buttons, a menu's groups) or a text box."""
        label = clean(str(block.get("label", {}).get("text", "")))
        element = block.get("element", {})
        groups = element.get("option_groups") or [{"options": element.get("options", [])}]
        lines = [f"{label}:"]
        for group in groups:
            heading = clean(str(group.get("label", {}).get("text", "")))
            names = ", ".join(clean(str(o["text"]["text"])) for o in group.get("options", []))
            if names:
                lines.append(f"  ( ) {heading + ': ' if heading else ''}{names}")
        return lines if len(lines) > 1 else [f"{label}: [ ____________ ]"]

    def footnotes(self) -> list[str]:
        notes = [f"[{n}] {clean(_decode(url))}" for n, url in enumerate(self.links, 1)]
        notes += [f"{EXTERNAL} {label}: {clean(url)}" for label, url in self.buttons]
        return ["", *notes] if notes else []


def render_text(message: Message, people: Mapping[str, str] | None = None) -> str:
    """The message as terminal text: one paragraph per block, then the URLs its links and buttons point to.

    `people` names user ids, as Slack shows `<@U0ALICE>` as `@alice`; an unknown id is shown as it is.
    """
    renderer = _Renderer(people or {})
    if not message.blocks:
        return "\n".join(renderer.mrkdwn(message.text) + renderer.footnotes())
    lines: list[str] = []
    previous = None
    for block in message.blocks:
        kind = block.get("type")
        if previous == kind == "section":
            lines.append("")  # consecutive sections (the alerts) read better apart
        lines += renderer.block(block)
        previous = kind
    return "\n".join(lines + renderer.footnotes())


def builder_url(message: Message) -> str:
    """A Block Kit Builder link that opens the message's blocks, to see the card as Slack draws it."""
    document = json.dumps({"blocks": message.blocks}, separators=(",", ":"), ensure_ascii=False)
    return BUILDER_URL + quote(document, safe="")


WIDTH = 80  # the demo's output fits an 80-column terminal
# What a wrapped line's continuation lines are indented under: context bars stay, bullets and markers indent.
_HANGING = re.compile(r"(\s*)(┆ |[•»↳✗] |\[\d+\] )?")


def fit(text: str, width: int = WIDTH) -> str:
    """`text` with every line longer than `width` wrapped at spaces, continuation lines indented under it.

    A word longer than the width (a URL) is never broken: it stays whole, on a line over the width.
    """
    return "\n".join(wrapped for line in text.split("\n") for wrapped in _fit_line(line, width))


def _fit_line(line: str, width: int) -> list[str]:
    if len(line) <= width:
        return [line]
    match = _HANGING.match(line)
    indent, marker = (match[1], match[2] or "") if match else ("", "")
    hanging = indent + (marker if marker == CONTEXT_PREFIX else " " * len(marker))
    lines: list[str] = []
    current, bare = indent + marker, True  # bare: nothing but the indent on the line yet
    for word in line[len(indent + marker) :].split(" "):
        if bare:
            if word:
                current, bare = current + word, False
        elif len(current) + 1 + len(word) <= width:
            current += " " + word
        else:
            lines.append(current)
            current, bare = hanging + word, not word
    return [*lines, current]
