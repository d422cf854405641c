"""The demo's last steps: an alert's details in a modal, then a triage change from the watch's root card.

@alice opens the menu of an alert on the watched device's card: *Details* opens the view from the cached list
(no Defender call), *Set status…* opens a form, which she submits; the bot writes to the simulator, tells her
alone, redraws the card, and the watch's next check says in the thread who changed what.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from bot.demo.preview import render_text
from bot.demo.standin import Posted
from bot.slack.alert_menu import ALERT_MENU
from bot.slack.alert_views import CHOICE_ACTION, CHOICE_BLOCK, NOTE_BLOCK
from bot.slack.blockkit import Message
from bot.text import clean

if TYPE_CHECKING:
    from bot.demo.session import _Session

DEMO_TRIAGE = {"BOT_TRIAGE": "on", "BOT_TRIAGE_USERS": "U0ALICE"}
DEMO_PEOPLE = {"U0ALICE": {"name": "alice", "real_name": "Alice", "email": "alice@contoso.com"}}
VIEW_TIMEOUT = 10.0
CARD_INDENT = " " * 6


def _root_card(session: _Session) -> Posted | None:
    """The watch's root card as the channel shows it now (its latest `chat.update`)."""
    posts = session.standin.posts
    roots = [p for p in posts if p.via == "chat.postMessage" and not p.payload.get("thread_ts")]
    if not roots:
        return None
    ts = roots[-1].payload["ts"]
    latest = [p for p in posts if p.via in ("chat.postMessage", "chat.update") and p.payload.get("ts") == ts]
    return latest[-1]


def _menu(posted: Posted, verb_label: str) -> tuple[str, str] | None:
    """(option value, alert title) of the first New alert whose menu offers `verb_label`."""
    for block in posted.payload.get("blocks") or []:
        accessory = block.get("accessory") or {}
        new = " · New · " in str(block.get("text", {}).get("text", ""))
        if block.get("type") == "section" and accessory.get("type") == "overflow" and new:
            for option in accessory["options"]:
                if option["text"]["text"] == verb_label:
                    title = block["text"]["text"].split("|", 1)[-1].split(">", 1)[0]
                    return option["value"], clean(title)
    return None


def _choose(session: _Session, card: Posted, label: str) -> dict[str, Any] | None:
    """@alice picks `label` in an alert's menu on `card`; the view the bot opened, if it opened one."""
    found = _menu(card, label)
    if found is None:
        session.print(f"  ✗ no alert on the card offers {label}")
        session.failed = True
        return None
    value, title = found
    session.print(f"» @alice picks [ {label} ] in the menu of {title}")
    opened = len(session.standin.modals.views)
    url = session.standin.response_url("menu")
    session.exchange(
        session.requests.overflow_action(ALERT_MENU, value, response_url=url, message_ts=str(card.payload["ts"])), None
    )
    deadline = time.monotonic() + VIEW_TIMEOUT
    while len(session.standin.modals.views) == opened and time.monotonic() < deadline:
        time.sleep(0.02)
    if len(session.standin.modals.views) == opened:
        session.print("  ✗ no window opened (the bot's log is on stderr)")
        session.failed = True
        return None
    view = session.standin.modals.views[-1]
    session.print(f"  ↳ Slack opens a window for @alice: {clean(view['title']['text'])}\n")
    session.print(_indented(render_text(Message(view["title"]["text"], view["blocks"]), {"U0ALICE": "alice"})))
    return view


def _indented(text: str) -> str:
    return "\n".join(CARD_INDENT + line if line else line for line in text.split("\n"))


def alert_steps(session: _Session) -> None:
    card = _root_card(session)
    if card is None:
        return
    session.step("9. Details: one alert in a window, from the cached list")
    calls = session.defender_calls
    _choose(session, card, "Details")
    session.print(f"  ↳ Defender calls: {session.defender_calls - calls} (the card's list was at hand)")
    session.step("10. Triage: set a status; the form is the confirmation")
    view = _choose(session, card, "Set status…")
    if view is None:
        return
    values = {
        CHOICE_BLOCK: {CHOICE_ACTION: {"type": "radio_buttons", "selected_option": {"value": "Resolved"}}},
        NOTE_BLOCK: {CHOICE_ACTION: {"type": "plain_text_input", "value": "Contained by EDR"}},
    }
    session.print("» @alice chooses Resolved, writes “Contained by EDR” and presses [ Set status ]")
    session.exchange(session.requests.view_submission(view, values), lambda new: len(new) >= 2)
    session.print("» The watch poller's next check")
    before = len(session.standin.posts)
    session.poller.run_once()
    told = [p for p in session.standin.posts[before:] if "via Slack" in json_text(p)]
    for posted in told:
        session.show(posted.message, posted.payload, "posted in the thread in #incident")
    if not told:
        session.print("  ✗ the watch's thread did not say who changed the alert")
        session.failed = True


def json_text(posted: Posted) -> str:
    return " ".join(str(b.get("text", {}).get("text", "")) for b in posted.payload.get("blocks") or [])
