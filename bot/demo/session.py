"""`python -m bot demo`: the real Slack app, driven by a scripted Slack session, all on this machine.

The bot runs as in production (HTTP mode, signature checks, Web API and response_url posts) against the
Defender simulator. `SlackStandIn` plays Slack's Web API and response_urls, `SlackRequests` signs what a
person does, and every message the bot sends is printed with `bot.slack.preview`. Nothing secret is
printed: the signing secret is random and the tokens are the stand-in's. Watches live in an in-memory
store, so the demo leaves no file behind, and the watch poller runs only when the script asks it to.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import secrets
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from textwrap import indent
from typing import Any, TextIO

import httpx
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.error import BoltError

from bot.config import Backend, Settings, SlackMode, load_slack_settings
from bot.defender.simulator import BUSY_HOSTNAME, HOSTILE_HOSTNAME
from bot.demo.preview import builder_url, fit, render_text
from bot.demo.slack_requests import Request, SlackRequests
from bot.demo.standin import Posted, SlackStandIn
from bot.demo.triage_steps import DEMO_PEOPLE, DEMO_TRIAGE, alert_steps
from bot.runtime import Runtime, build_runtime, build_slack_bot
from bot.slack import actions
from bot.slack.blockkit import Message
from bot.slack.bolt import SignatureCheck, StartupError
from bot.slack.commands import Lookup, StartWatch, StopWatch, parse_command
from bot.slack.server import EVENTS_PATH, HttpServer, wsgi_app
from bot.text import clean
from bot.watch.poller import Poller

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
COMMAND, MENTION = "/device-alerts", "@device-alerts"
USER, CHANNEL = "@alice", "#incident"  # who SlackRequests plays, and where
PEOPLE = {"U0ALICE": USER.removeprefix("@")}  # SlackRequests' user id, shown by name as Slack would
POST_TIMEOUT = 10.0  # seconds to wait for an answer the bot should post
QUIET_WAIT = 0.3  # seconds to watch a step that should post nothing
THREAD_TS = "1700000000.000100"  # the message the scripted mention replies to
WATCHED = "ws-fin-014"  # the device the scripted watch follows
MEMORY_STATE = "sqlite:///:memory:"  # the demo's watches: gone when it ends, nothing written to disk
CARD_INDENT, NOTE_INDENT = " " * 6, " " * 4
INTRO = """\
device-alerts demo: the real Slack app and the built-in Defender simulator, on
this machine, with no credentials and no network. Each step below is a signed
request to the bot, as Slack would send it, and a local stand-in for Slack
records what the bot posts back. With --links, each card also gets a Block Kit
Builder link that shows it as Slack draws it. The bot is listening on
{url}."""


def _refresh_value(message: Message) -> str | None:
    """The value of the card's Refresh button: what Slack sends back when it is pressed."""
    buttons = (e for b in message.blocks if b.get("type") == "actions" for e in b.get("elements", []))
    return next((str(e.get("value", "")) for e in buttons if e.get("action_id") == actions.REFRESH), None)


def _where(posted: Posted) -> str:
    """Where Slack would show a message the bot sent, and to whom."""
    if posted.via == "chat.update":
        return f"updated the card in {CHANNEL} in place (chat.update)"
    if posted.via == "chat.postMessage":
        return f"posted in the thread in {CHANNEL}" if posted.payload.get("thread_ts") else f"posted in {CHANNEL}"
    if posted.replaced:  # a button's answer takes the place of the card it is on
        return f"replaced the card in {CHANNEL}"
    if posted.target.startswith("command-") and posted.payload.get("response_type") != "in_channel":
        return f"answered below the note, seen only by {USER}"  # Slack cannot replace the ack's note
    everyone = posted.payload.get("response_type") == "in_channel"
    return f"posted in {CHANNEL} ({'visible to everyone' if everyone else f'visible only to {USER}'})"


def _json(payload: dict[str, Any]) -> str:
    """Pretty JSON, with anything unprintable escaped so the terminal shows it as `\\uXXXX`."""
    text = json.dumps({k: v for k, v in payload.items() if k != "token"}, indent=2, ensure_ascii=False)
    return "".join(ch if ch.isprintable() or ch == "\n" else f"\\u{ord(ch):04x}" for ch in text)


class _Session:
    """Plays a person in Slack: sends signed requests, waits for what the bot posts, prints both."""

    def __init__(
        self,
        out: TextIO,
        as_json: bool,
        links: bool,
        standin: SlackStandIn,
        runtime: Runtime,
        poller: Poller,
        port: int,
        secret: str,
    ) -> None:
        self._out, self._as_json, self.standin, self._runtime = out, as_json, standin, runtime
        self.poller = poller
        self.events_url = f"http://127.0.0.1:{port}{EVENTS_PATH}"
        self.requests = SlackRequests(secret, on_trigger=standin.issue_trigger)
        self._http = httpx.Client(timeout=POST_TIMEOUT, trust_env=False)  # loopback: never via a proxy
        self._names = itertools.count(1)
        self.sent, self.slowest_ack_ms, self.failed = 0, 0.0, False
        self.last_card: Posted | None = None  # the newest message with a Refresh button
        self.builder_links = links  # print a Block Kit Builder link under each card (`--links`)

    def close(self) -> None:
        self._http.close()

    @property
    def defender_calls(self) -> int:
        return self._runtime.tenant.calls if self._runtime.tenant else 0

    def print(self, text: str = "", end: str = "\n", *, wrap: bool = True) -> None:
        """Print `text`, its long lines wrapped to 80 columns (JSON and links are printed as they are)."""
        text = fit(text) if wrap else text
        encoding = getattr(self._out, "encoding", None)
        if encoding:  # a terminal that cannot show box drawing gets '?' instead of an exception
            text = text.encode(encoding, "replace").decode(encoding)
        print(text, file=self._out, end=end, flush=True)

    def step(self, title: str) -> None:
        heading = f"━━ {title} "
        self.print(f"\n{heading}{'━' * max(3, 80 - len(heading))}")  # 80 columns: no wrapping in a terminal

    # What a person does ------------------------------------------------------------------------------------

    def command(self, text: str) -> list[Posted]:
        self.print(f"» {USER} in {CHANNEL}: {clean(f'{COMMAND} {text}')}")
        name = f"command-{next(self._names)}"
        url = self.standin.response_url(name)
        # Work the bot does after the ack ends with a message to the command's response_url; the rest is in the ack.
        later = isinstance(parse_command(text), Lookup | StartWatch | StopWatch)
        answered = _reached(name) if later else None
        return self.exchange(self.requests.command(text, response_url=url), answered)

    def mention(self, text: str, *, thread_ts: str | None = None) -> list[Posted]:
        place = "a thread" if thread_ts else CHANNEL
        self.print(f"» {USER} in {place}: {clean(f'{MENTION} {text}')}")
        extra = {"thread_ts": thread_ts} if thread_ts else {}
        event = self.requests.mention(text, **extra)
        thread = str(thread_ts or event["ts"])  # the bot answers a mention in its thread

        def answered(new: list[Posted]) -> bool:
            return any(p.via == "chat.postMessage" and p.payload.get("thread_ts") == thread for p in new)

        return self.exchange(self.requests.event(event), answered)

    def refresh(self, card: Posted | None) -> list[Posted]:
        value = _refresh_value(card.message) if card else None
        if card is None or value is None:
            self.print("There is no card to refresh yet: look a device up first.")
            return []
        title = next((b["text"]["text"] for b in card.message.blocks if b.get("type") == "header"), "the card")
        self.print(f"» {USER} presses [ Refresh ] on {clean(title)}")
        name = f"action-{next(self._names)}"
        url = self.standin.response_url(name, for_action=True)
        return self.exchange(self.requests.block_action(actions.REFRESH, value, response_url=url), _reached(name))

    def change_in_defender(self, hostname: str) -> None:
        """What happens in Defender meanwhile: a new High alert, and an analyst taking an existing one."""
        tenant = self._runtime.tenant
        if tenant is None:  # cannot happen: run_demo always builds the simulator
            raise RuntimeError("the demo needs the Defender simulator")
        device = next(m for m in tenant.machines if str(m["computerDnsName"]).split(".")[0] == hostname)
        taken = next(a for a in tenant.alerts if a["machineId"] == device["id"] and a["status"] == "New")
        added = tenant.add_alert(
            device["id"], title="Ransomware behavior detected", severity="High", category="Ransomware"
        )
        tenant.set_alert_status(taken["id"], "InProgress", assignedTo="secops@contoso.com")
        self.print(f"» Meanwhile in Defender (the simulator), on {clean(str(device['computerDnsName']))}:")
        self.print(f"    a new {added['severity']} alert appears: {clean(added['title'])}")
        self.print(f"    secops@contoso.com took {clean(taken['title'])} (now In progress)")

    def check(self) -> list[Posted]:
        """One cycle of the watch poller, as its background thread runs every WATCH_POLL_SECONDS."""
        self.print(f"» The watch poller checks Defender (every {self.poller.base_interval:.0f} s in production)")
        before, calls = len(self.standin.posts), self.defender_calls
        report = self.poller.run_once()
        self.print(
            f"  ↳ {self.defender_calls - calls} Defender call{'' if self.defender_calls - calls == 1 else 's'} "
            f"for every watched device; {report.changes} changes, grouped in {report.posted} "
            f"repl{'y' if report.posted == 1 else 'ies'}"
        )
        new = self.standin.posts[before:]
        for posted in new:
            self.show(posted.message, posted.payload, _where(posted))
        if report.posted != 1 or not any(p.via == "chat.update" for p in new):
            self.print("  ✗ expected one reply in the card's thread and the card updated (the bot's log is on stderr)")
            self.failed = True
        return new

    # What the bot does -----------------------------------------------------------------------------------

    def exchange(self, request: Request, answered: Callable[[list[Posted]], bool] | None) -> list[Posted]:
        """Send one signed request, show the acknowledgement, then whatever the bot posts because of it.

        `answered` tells from the new posts that the bot is done; None means it should post nothing.
        """
        before, calls = len(self.standin.posts), self.defender_calls
        body, headers = request
        started = time.perf_counter()
        response = self._http.post(self.events_url, content=body, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        self.sent, self.slowest_ack_ms = self.sent + 1, max(self.slowest_ack_ms, elapsed)
        if response.status_code != 200:
            self.print(f"  ✗ the bot answered HTTP {response.status_code}")
            self.failed = True
            return []
        if response.content:
            ack = response.json()
            message = Message(str(ack.get("text", "")), list(ack.get("blocks") or []))
            self.show(message, ack, f"ack in {elapsed:.0f} ms, seen only by {USER}")
        else:
            self.print(f"  ↳ ack in {elapsed:.0f} ms, empty: Slack shows nothing")
        new = self.wait(before, answered)
        if answered is not None and not answered(new):
            self.print(f"  ✗ no message from the bot within {POST_TIMEOUT:.0f} s (its log is on stderr)")
            self.failed = True
        if not new:
            called = self.defender_calls - calls
            self.print(f"  ↳ nothing was posted to Slack; Defender calls: {called}")
        for posted in new:
            self.show(posted.message, posted.payload, _where(posted))
            if _refresh_value(posted.message) is not None:
                self.last_card = posted
        return new

    def wait(self, before: int, answered: Callable[[list[Posted]], bool] | None) -> list[Posted]:
        """The posts since `before`, once `answered` holds (or the time is up)."""
        deadline = time.monotonic() + (POST_TIMEOUT if answered else QUIET_WAIT)
        while True:
            new = self.standin.posts[before:]
            remaining = deadline - time.monotonic()
            if (answered is not None and answered(new)) or remaining <= 0:
                return new
            try:
                self.standin.wait_for_posts(before + len(new) + 1, remaining)
            except TimeoutError:
                return self.standin.posts[before:]

    def show(self, message: Message, payload: dict[str, Any], where: str) -> None:
        text = render_text(message, PEOPLE)
        if "\n" in text:  # a card: drawn in full, with a link to see it as Slack would
            self.print(f"  ↳ {where}:\n")
            self.print(indent(text, CARD_INDENT))
            if self.builder_links:
                self.print(f"\n{NOTE_INDENT}Block Kit Builder: {builder_url(message)}", wrap=False)
        else:
            self.print(f"  ↳ {where}: {text}")
        if self._as_json:
            self.print(f"{NOTE_INDENT}JSON payload:\n{indent(_json(payload), NOTE_INDENT)}", wrap=False)

    def point_out_escaping(self, posts: list[Posted]) -> None:
        """Show the raw mrkdwn of the alert that tried to ping the channel: Slack receives it escaped."""
        sections = [b.get("text", {}).get("text", "") for p in posts for b in p.message.blocks]
        lines = [line for text in sections for line in text.split("\n") if "&lt;!" in line]
        if lines:
            note = "The alert text tried <!channel> and a disguised link. In the raw mrkdwn\nthe bot sent they are "
            note += f"escaped, so Slack shows them as text and pings no one:\n  {clean(lines[0])}"
            self.print("\n" + indent(note, NOTE_INDENT))

    def summary(self) -> None:
        self.step("Summary")
        self.print(f"  Signed requests sent: {self.sent}; slowest ack {self.slowest_ack_ms:.0f} ms (Slack allows 3 s).")
        self.print(f"  Defender API calls the simulator received: {self.defender_calls}.")
        self.print('  Next: "Run it in your workspace" in the README puts the bot in your Slack.')


def _reached(target: str) -> Callable[[list[Posted]], bool]:
    """Done once something was posted to the response_url named `target`."""
    return lambda new: any(p.via == "response_url" and p.target == target for p in new)


def _script(session: _Session) -> None:
    session.print(INTRO.format(url=session.events_url))
    session.step("1. A slash command: the card is posted to the channel")
    first = session.command("ws-fin-014")
    session.step("2. A mention: the bot answers in the thread")
    session.mention(f"{BUSY_HOSTNAME.split('.')[0]} severity:high since:7d", thread_ts=THREAD_TS)
    session.step("3. Refresh: the card is replaced (this soon after, from the cache)")
    session.refresh(first[0] if first else None)
    session.step("4. Bad input: explained to the sender only; Defender is not called")
    session.command("ws-fin-014 severity:urgent")
    session.step("5. Hostile alert text: pings and disguised links arrive escaped")
    session.point_out_escaping(session.command(HOSTILE_HOSTNAME.split(".")[0]))
    session.step("6. Help")
    session.command("help")
    session.builder_links = False  # the watch cards are device cards like those above; --json prints them
    session.step("7. Watch: a root card in the channel, a note in its thread")
    session.command(f"watch {WATCHED} for:1h")
    session.step("8. Defender changes: one reply in the card's thread, and the card redrawn")
    session.change_in_defender(WATCHED)
    session.check()
    alert_steps(session)


def _interactive(session: _Session, stdin: TextIO) -> None:
    hint = f"Type {COMMAND} <device> [filters], {MENTION} <device>, refresh or quit"
    session.print(f"device-alerts demo (interactive; try ws-fin-014).\n{hint}")
    while True:
        session.print()
        if stdin.isatty():
            session.print("› ", end="")
        line = stdin.readline()
        first, _, rest = line.strip().partition(" ")
        if not line or first.lower() in ("quit", "exit"):
            return
        if first == COMMAND:
            session.command(rest.strip())
        elif first == MENTION:
            session.mention(rest.strip())
        elif first.lower() == "refresh":
            session.refresh(session.last_card)
        elif first:
            session.print(hint)


def run_demo(
    settings: Settings,
    *,
    out: TextIO,
    as_json: bool = False,
    links: bool = False,
    interactive: bool = False,
    stdin: TextIO | None = None,
) -> int:
    """Play the scripted session (or the person's lines) against the bot; 0 when every answer arrived."""
    secret = secrets.token_hex(16)
    try:
        with ExitStack() as stack:
            standin = stack.enter_context(SlackStandIn())
            env = {"SLACK_BOT_TOKEN": standin.bot_token, "SLACK_SIGNING_SECRET": secret}
            env["SLACK_API_URL"] = standin.api_url
            env["BOT_AUDIT_LOG"] = "off"  # scripted requests: audit lines would only bury the readable cards
            env |= DEMO_TRIAGE  # @alice may change alerts (triage is off unless switched on)
            standin.modals.users.update(DEMO_PEOPLE)
            # Never a real tenant, and never a state file in the person's working directory.
            demo_settings = dataclasses.replace(
                settings,
                defender=dataclasses.replace(settings.defender, backend=Backend.SIMULATOR),
                state=dataclasses.replace(settings.state, url=MEMORY_STATE),
            )
            runtime = build_runtime(demo_settings, warm_up=True)
            stack.callback(runtime.close)  # in case the bot fails to build; closing twice is harmless
            try:  # auth.test, the bot's first call to the stand-in
                bot = build_slack_bot(runtime, load_slack_settings(SlackMode.HTTP, env))
            except (StartupError, BoltError, OSError) as exc:
                print(f"demo: the bot could not reach its local Slack stand-in ({exc}); with HTTPS_PROXY set, "
                      "add 127.0.0.1 to NO_PROXY.", file=sys.stderr)  # fmt: skip
                return EXIT_FAILED
            stack.callback(bot.close)
            verify = SignatureCheck(bot.settings.request_secrets)
            application = wsgi_app(bot.health, SlackRequestHandler(bot.app), bot.metrics, verify=verify)
            server = HttpServer(application, "127.0.0.1", 0).start()
            stack.callback(server.close)
            session = _Session(out, as_json, links, standin, runtime, bot.poller, server.port, secret)
            stack.callback(session.close)
            if interactive:
                _interactive(session, stdin or sys.stdin)
            else:
                _script(session)
            session.summary()
            return EXIT_FAILED if session.failed else EXIT_OK
    except KeyboardInterrupt:
        print("\nInterrupted.", file=out, flush=True)
        return EXIT_INTERRUPTED
