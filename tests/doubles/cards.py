"""Cards for tests: what to render, how to read what was rendered, and the escaping checker.

The checker (`safety_problems`, `assert_sendable`) is what every rendered message must pass: inside Block Kit's
limits, every mrkdwn object and the fallback text escaped (no `<!channel>`, no foreign link), no hidden
characters. `TEST_SEAL` seals the buttons of cards rendered outside a bot (a bot seals with its own secret).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from bot.slack.actions import ButtonSeal
from bot.slack.blockkit import MAX_BLOCKS, MAX_TOTAL_TEXT, Block, Message, block_text_length, violations
from bot.slack.cards import CardContext

PORTAL = "https://security.microsoft.com"
# The seal for cards rendered outside a bot (a bot seals with its own signing secret).
TEST_SEAL = ButtonSeal(bytes(range(32)))
TENANT = "8f3c2d1e-0000-4000-8000-00000000abcd"
MID = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
HOST = "ws-fin-014.contoso.local"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
DEVICE_URL = f"{PORTAL}/machines/v2/{MID}/overview"


HOSTILE_TITLES = [
    "<!channel> wake up",
    "<!here> & <!everyone>",
    "<@U123> <@W9|boss> <#C42|general> <!subteam^S1|@oncall>",
    "<https://evil.example/login|Open in Defender>",
    "a & b &amp; c &lt;d&gt; e",
    ">>> quoted > twice",
    "pipe | in | title|label>",
    "```code``` `tick` *bold* _it_ ~strike~",
    "line one\nline two\r\nline three\ttab",
    "invoice\u202etxt.exe",
    "zero\u200bwidth\u200d\ufeffjoiner\u2060",
    "\x1b[31mred\x1b[0m \x07bell \x00nul",
]


# Reading cards -----------------------------------------------------------------------------


def text_objects(node: Any) -> Iterator[tuple[str, str]]:
    """Every (type, text) text object anywhere in a block tree."""
    if isinstance(node, dict):
        if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
            yield node["type"], node["text"]
        for value in node.values():
            if isinstance(value, dict | list):
                yield from text_objects(value)
    elif isinstance(node, list):
        for item in node:
            yield from text_objects(item)


def blocks_of(message: Message, kind: str) -> list[Block]:
    return [b for b in message.blocks if b["type"] == kind]


def context_texts(message: Message, index: int = 0) -> list[str]:
    return [e["text"] for e in blocks_of(message, "context")[index]["elements"]]


def section_texts(message: Message) -> list[str]:
    return [b["text"]["text"] for b in blocks_of(message, "section")]


# The escaping checker ----------------------------------------------------------------------

# The only `<…>` sequences the renderer itself writes: portal links (with or without a label) and dates.
_BOT_LINK = re.compile("<" + re.escape(PORTAL) + r"/[^\s<>|]+(?:\|[^<>|]*)?>")
_BOT_DATE = re.compile(r"<!date\^-?[0-9]+\^[^<>|]*\|[^<>|]*>")
_SPECIAL = re.compile(r"<[!@#]")
_BARE_AMP = re.compile(r"&(?!amp;|lt;|gt;)")


def mrkdwn_problems(text: str) -> list[str]:
    """Why `text` is not safe mrkdwn: unescaped control characters outside the bot's own tokens."""
    found = []
    for match in _SPECIAL.finditer(text):
        if not text.startswith("<!date^", match.start()):
            found.append(f"special token at {match.start()}: {text[match.start() : match.start() + 20]!r}")
    stripped = _BOT_DATE.sub("", _BOT_LINK.sub("", text))
    if "<" in stripped:
        found.append(f"unescaped '<' in {stripped!r}")
    if ">" in stripped:
        found.append(f"unescaped '>' in {stripped!r}")
    if _BARE_AMP.search(stripped):
        found.append(f"bare '&' in {stripped!r}")
    return found


def hidden_characters(text: str) -> list[str]:
    """Control and format characters (other than the line breaks the renderer adds)."""
    return [repr(ch) for ch in text if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn")]


def safety_problems(message: Message) -> list[str]:
    """Every escaping problem in a message: mrkdwn objects and the fallback text must be escaped,
    plain_text objects (shown literally by Slack, never parsed) must at least be clean."""
    found = [f"fallback: {p}" for p in mrkdwn_problems(message.text)]
    found += [f"fallback: hidden {c}" for c in hidden_characters(message.text.replace("\n", " "))]
    for kind, text in text_objects(message.blocks):
        if kind == "mrkdwn":
            found += mrkdwn_problems(text)
        found += [f"{kind}: hidden {c}" for c in hidden_characters(text)]
    return found


# What every message must pass ----------------------------------------------------------------


def assert_sendable(message: Message) -> None:
    assert violations(message) == []
    assert safety_problems(message) == []
    assert block_text_length(message.blocks) <= MAX_TOTAL_TEXT
    assert len(message.blocks) <= MAX_BLOCKS
    assert message.text.strip()


# Watch cards: the context they render in, and the one mention they write ---------------------

CONTEXT = CardContext(PORTAL, TENANT, now=NOW, seal=TEST_SEAL)
# The one mention a watch card writes itself: the person who watches (an id from a signed Slack payload).
WATCHER = "U0ALICE"


def without_watcher(message: Message) -> Message:
    """The message with the watcher's mention taken out, so the escaping checker sees everything else."""
    raw = json.dumps({"text": message.text, "blocks": message.blocks}).replace(f"<@{WATCHER}>", "@alice")
    data = json.loads(raw)
    return Message(data["text"], data["blocks"])
