"""The terminal preview of Block Kit (`bot.demo.preview`): what the demo prints for each card, and the builder link."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote

import pytest

from bot.demo.preview import BUILDER_URL, RULE, builder_url, render_text
from bot.slack.blockkit import Message


def builder_blocks(url: str) -> Any:
    assert url.startswith(BUILDER_URL)
    return json.loads(unquote(url.removeprefix(BUILDER_URL)))


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(label: str, **extra: str) -> dict[str, Any]:
    return {"type": "button", "text": {"type": "plain_text", "text": label}, "action_id": label.lower(), **extra}


def test_header_context_divider_and_sections() -> None:
    message = Message(
        "fallback",
        [
            {"type": "header", "text": {"type": "plain_text", "text": "ws-1 · 2 alerts"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "one"}, {"type": "plain_text", "text": "two"}]},
            section("*Severity*  :red_circle: High 1"),
            {"type": "divider"},
            section("first"),
            section("second\nline"),
        ],
    )
    assert render_text(message).splitlines() == [
        "ws-1 · 2 alerts",
        "═══════════════",
        "┆ one",
        "┆ two",
        "Severity ● High 1",
        RULE,
        "first",
        "",
        "second",
        "line",
    ]


def test_links_become_numbered_footnotes() -> None:
    message = Message("x", [section("<https://a.example/1|First> and <https://b.example/?a=1&amp;b=2|Second>")])
    assert render_text(message).splitlines() == [
        "First [1] and Second [2]",
        "",
        "[1] https://a.example/1",
        "[2] https://b.example/?a=1&b=2",
    ]


def test_bare_links_mentions_and_dates() -> None:
    text = "<https://a.example> <@U123> <@U9|bob> <#C1|general> <!here> <!subteam^S1|@sec> "
    text += "<!date^1700000000^{time}|2023-11-14 22:13 UTC>"
    assert render_text(Message("x", [section(text)])) == (
        "https://a.example @U123 @bob #general @here @sec 2023-11-14 22:13 UTC"
    )


def test_known_people_are_shown_by_name() -> None:
    text = "<@U0ALICE> <@U0BOB> <@U0BOB|bob> <#C1|general>"
    assert render_text(Message("x", [section(text)]), {"U0ALICE": "alice"}) == "@alice @U0BOB @bob #general"
    assert render_text(Message("x", [section(text)])) == "@U0ALICE @U0BOB @bob #general"


def test_entities_are_decoded_once() -> None:
    message = Message("x", [section("&lt;b&gt; &amp;amp; &amp;lt;!channel&amp;gt; &#27;")])
    assert render_text(message) == "<b> &amp; &lt;!channel&gt; &#27;"


def test_emoji_and_bold() -> None:
    text = ":warning: :red_circle: *High* · :large_orange_circle: :large_yellow_circle: :white_circle: :tada: 2*3*4"
    assert render_text(Message("x", [section(text)])) == "⚠ ● High · ● ● ○ :tada: 2*3*4"


def test_actions_are_buttons_and_link_buttons_list_their_url() -> None:
    actions = {
        "type": "actions",
        "elements": [
            button("Refresh", value="v"),
            button("Open in Defender", url="https://p.example/d"),
            button("Watch"),
        ],
    }
    assert render_text(Message("x", [actions])).splitlines() == [
        "[ Refresh ] [ Open in Defender ↗ ] [ Watch ]",
        "",
        "↗ Open in Defender: https://p.example/d",
    ]


def test_messages_without_blocks_and_unknown_blocks() -> None:
    assert render_text(Message("*Looking up* ws-1…")) == "Looking up ws-1…"
    assert render_text(Message("x", [{"type": "image", "image_url": "https://i.example"}])) == "[image block]"


@pytest.mark.parametrize(
    "hostile",
    [
        "\x1b[31mCRITICAL\x1b[0m wiper \x1b]8;;https://evil.example\x07click\x1b]8;;\x07",
        "Invoice\u202egpj.exe opened by pay\u200broll\u200d\ufeff",
        "tab\tand\rcarriage \x9b31m C1 \x7f del",
    ],
)
def test_hostile_text_cannot_reach_the_terminal(hostile: str) -> None:
    message = Message(
        hostile,
        [
            {"type": "header", "text": {"type": "plain_text", "text": hostile}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": hostile}]},
            section(f"&lt;!channel&gt; {hostile}\n<https://x.example/{hostile}|{hostile}>"),
            {"type": "actions", "elements": [button(hostile, url=f"https://x.example/{hostile}")]},
        ],
    )
    shown = render_text(message)
    assert "<!channel>" in shown
    for line in shown.splitlines():
        assert all(ch.isprintable() for ch in line), repr(line)


def test_builder_url_round_trips_the_blocks() -> None:
    blocks = [section("<https://a.example/?x=1&amp;y=2|Ünïcode · #1> 100% & more"), {"type": "divider"}]
    url = builder_url(Message("x", blocks))
    assert url.startswith("https://app.slack.com/block-kit-builder#")
    fragment = url.removeprefix(BUILDER_URL)
    assert re.fullmatch(r"[A-Za-z0-9%._~-]+", fragment), fragment
    assert builder_blocks(url) == {"blocks": blocks}


def test_every_shortcode_the_bot_writes_is_shown_as_a_one_column_symbol() -> None:
    """No raw `:eyes:` in the terminal: each shortcode in the bot's Slack code has a narrow symbol."""
    from pathlib import Path

    import bot
    from bot.demo.preview import EMOJI

    root = Path(bot.__file__).parent
    sources = [path.read_text() for folder in ("slack", "watch") for path in (root / folder).glob("*.py")]
    used = {code for text in sources for code in re.findall(r'(?<=["\s]):[a-z_]+:(?=["\s])', text)}
    assert ":eyes:" in used and ":hourglass:" in used
    assert used <= set(EMOJI), used - set(EMOJI)
    shown = render_text(Message("x", [section(" ".join(sorted(used)))]))
    assert not re.search(r":[a-z_]+:", shown)
    assert all(len(symbol) == 1 for symbol in EMOJI.values())


def test_fit_wraps_long_lines_under_their_marker_and_keeps_urls_whole() -> None:
    from bot.demo.preview import fit

    context = "      ┆ " + " ".join(["word"] * 30)
    lines = fit(context).splitlines()
    assert len(lines) > 1 and all(len(line) <= 80 for line in lines)
    assert all(line.startswith("      ┆ ") for line in lines)
    note = "  ↳ posted: " + " ".join(["word"] * 30)
    assert all(line.startswith("    ") for line in fit(note).splitlines()[1:])
    url = "      [1] https://security.microsoft.com/alerts/" + "x" * 90
    assert fit(url) == url  # one long word: never broken, never moved away from its marker
    assert fit("short line") == "short line"
