"""The demo (`python -m bot demo`) run in-process: `run_demo`, and through the command line's `main`.

The scripted session is played once per module (it starts real HTTP servers); each test reads the part of
the transcript it is about. A recording SlackStandIn keeps what the bot posted, to compare with the output.
The terminal preview it prints with is tested on its own in tests/unit/demo/test_preview.py.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO, cast
from urllib.parse import unquote

import pytest

from bot.cli import main
from bot.config import Backend, Settings, load_settings
from bot.defender.simulator import HOSTILE_HOSTNAME
from bot.demo import session as demo
from bot.demo.preview import BUILDER_URL, builder_url, render_text
from bot.demo.session import THREAD_TS, run_demo
from bot.demo.standin import Posted, SlackStandIn
from bot.slack.blockkit import Message
from bot.watch.poller import CycleReport, Poller
from tests.doubles import secrets as fake_secrets

SECRET = fake_secrets.DEMO_SIGNING_SECRET
BOT_TOKEN = fake_secrets.STANDIN_BOT_TOKEN
STEP_HEADINGS = (
    "━━ 1. A slash command: the card is posted to the channel ",
    "━━ 2. A mention: the bot answers in the thread ",
    "━━ 3. Refresh: the card is replaced ",
    "━━ 4. Bad input: explained to the sender only; Defender is not called ",
    "━━ 5. Hostile alert text: pings and disguised links arrive escaped ",
    "━━ 6. Help ",
    "━━ 7. Watch: a root card in the channel, a note in its thread ",
    "━━ 8. Defender changes: one reply in the card's thread, and the card redrawn ",
    "━━ 9. Details: one alert in a window, from the cached list ",
    "━━ 10. Triage: set a status; the form is the confirmation ",
    "━━ Summary ",
)
PERSON_LINES = (
    "» @alice in #incident: /device-alerts ws-fin-014\n",
    "» @alice in a thread: @device-alerts srv-build-07 severity:high since:7d\n",
    "» @alice presses [ Refresh ] on ws-fin-014.contoso.local",
    "» @alice in #incident: /device-alerts ws-fin-014 severity:urgent\n",
    "» @alice in #incident: /device-alerts ws-eng-666\n",
    "» @alice in #incident: /device-alerts help\n",
    "» @alice in #incident: /device-alerts watch ws-fin-014 for:1h\n",
    "» @alice picks [ Details ] in the menu of ",
    "» @alice picks [ Set status… ] in the menu of ",
    "» @alice chooses Resolved, writes “Contained by EDR” and presses [ Set status ]",
)
# What the bot posted, in order: steps 1-3 (lookup card, mention reply, refreshed card), 5 (hostile card),
# 7 (root card, thread note, confirmation), 8 (the root card updated, the follow-up in its thread) and 10 (the
# card redrawn after the triage change, the note to @alice, the watch's line saying who changed it).
LOOKUP_POSTS = 4
ROOT, NOTE, CONFIRMATION, UPDATE, FOLLOWUP = range(LOOKUP_POSTS, LOOKUP_POSTS + 5)
BUILDER_LINK = re.compile(r"Block Kit Builder: (\S+)")
WIDTH = 80
URL = re.compile(r"\S*https?://\S+")


def flat(text: str) -> str:
    """`text` with the demo's 80-column wrapping undone: continuation lines joined to the line before."""
    return re.sub(r" *\n[ ┆]*(?=\S)", " ", text)


INVISIBLE = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e")


@dataclass
class Run:
    code: int
    out: str
    posts: list[Posted]

    def step(self, number: int) -> str:
        """The transcript of one scripted step, from its heading to the next one."""
        start = self.out.index(STEP_HEADINGS[number - 1])
        return self.out[start : self.out.index("\n━━ ", start + 1)]


def simulator_settings() -> Settings:
    return load_settings({"DEFENDER_BACKEND": "simulator"})


def play(monkeypatch: pytest.MonkeyPatch, stdin: str | None = None, **options: Any) -> Run:
    """Run the demo with a known signing secret and a stand-in that is kept for inspection."""
    kept: list[SlackStandIn] = []

    class KeptStandIn(SlackStandIn):
        def __init__(self) -> None:
            super().__init__()
            kept.append(self)

    monkeypatch.setattr(secrets, "token_hex", lambda nbytes=None: SECRET)
    monkeypatch.setattr(demo, "SlackStandIn", KeptStandIn)
    out = io.StringIO()
    settings = options.pop("settings", None) or simulator_settings()
    if stdin is not None:
        options |= {"interactive": True, "stdin": io.StringIO(stdin)}
    code = run_demo(settings, out=out, **options)
    return Run(code, out.getvalue(), kept[0].posts)


@pytest.fixture(scope="module")
def scripted() -> Iterator[Run]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield play(monkeypatch)


@pytest.fixture(scope="module")
def scripted_links() -> Iterator[Run]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield play(monkeypatch, links=True)


@pytest.fixture(scope="module")
def scripted_json() -> Iterator[Run]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield play(monkeypatch, as_json=True)


def builder_blocks(url: str) -> Any:
    assert url.startswith(BUILDER_URL)
    return json.loads(unquote(url.removeprefix(BUILDER_URL)))


# -- the scripted session -----------------------------------------------------------------------------------------


def test_every_step_is_played_and_announced(scripted: Run) -> None:
    assert scripted.code == 0, scripted.out
    for heading in STEP_HEADINGS:
        assert heading in scripted.out
    for line in PERSON_LINES:
        assert line in scripted.out
    # The two lookups, the mention, the refresh and the watch reached the stand-in; bad input and help did not.
    assert len(scripted.posts) == LOOKUP_POSTS + 8


def test_slash_command_card_is_posted_to_the_channel(scripted: Run) -> None:
    step = scripted.step(1)
    assert "ack in " in step and "seen only by @alice: Looking up ws-fin-014…" in step
    assert "posted in #incident (visible to everyone)" in step
    assert "ws-fin-014.contoso.local · " in step
    assert re.search(r"^ +Severity ● \w+ \d+", step, re.MULTILINE), step
    assert re.search(r"^ +Status \w+", step, re.MULTILINE), step
    assert "[ Refresh ] [ Open in Defender ↗ ] [ Watch ]" in step
    assert scripted.posts[0].payload["response_type"] == "in_channel"


def test_mention_is_answered_in_the_thread(scripted: Run) -> None:
    step = scripted.step(2)
    assert "posted in the thread in #incident" in step
    assert "srv-build-07.contoso.local · " in step
    assert "Filters severity: High · since: 7d" in step
    mention_reply = scripted.posts[1]
    assert mention_reply.via == "chat.postMessage"
    assert mention_reply.payload["thread_ts"] == THREAD_TS


def test_refresh_replaces_the_card_using_its_own_button_value(scripted: Run) -> None:
    step = scripted.step(3)
    assert "replaced the card in #incident" in step
    assert "ws-fin-014.contoso.local · " in step
    first, refreshed = scripted.posts[0], scripted.posts[2]
    assert refreshed.via == "response_url"
    assert refreshed.payload["replace_original"] is True
    assert refreshed.message.blocks[-1] == first.message.blocks[-1]  # same buttons: the same device and filters


def test_bad_input_is_explained_and_nothing_is_posted(scripted: Run) -> None:
    step = scripted.step(4)
    assert "seen only by @alice:" in step
    assert "unknown severity 'urgent'" in step
    assert "You asked: `ws-fin-014 severity:urgent`" in step
    assert "nothing was posted to Slack; Defender calls: 0" in step


def test_hostile_text_arrives_escaped_and_is_shown_without_control_characters(scripted: Run) -> None:
    step = scripted.step(5)
    assert "raw mrkdwn" in step
    raw_line = flat(step[step.index("raw mrkdwn") :])
    assert "&lt;!channel&gt;" in raw_line
    assert "<!channel>" not in raw_line  # in the raw mrkdwn it never appears unescaped
    # The rendered card shows the text as a person would read it, defused.
    assert "<!channel> Urgent: <https://evil.example/login¦Reset your password> [" in flat(step)
    assert "CRITICAL" in step
    assert "Invoicegpj.exe opened by payroll" in step
    for text in (scripted.out, step):
        assert "\x1b" not in text
        assert "\x07" not in text
        for char in INVISIBLE:
            assert char not in text, repr(char)


def test_help_is_shown_to_the_sender_only(scripted: Run) -> None:
    step = scripted.step(6)
    assert "Look up a device's Defender alerts" in step
    assert "Watch a device" in step
    assert "nothing was posted to Slack; Defender calls: 0" in step


def test_watch_posts_a_root_card_and_a_thread_note(scripted: Run) -> None:
    step = scripted.step(7)
    assert "seen only by @alice: Setting up a watch on ws-fin-014…" in step
    assert "  ↳ posted in #incident:\n" in step
    assert "[ Refresh ] [ Open in Defender ↗ ] [ Unwatch ]" in step
    step = flat(step)  # the long lines below are wrapped to 80 columns
    assert re.search(r"◉ Watched by @alice until [-\d]+ [:\d]+ UTC · last checked [-\d]+ [:\d]+ UTC", step)
    assert "[ Refresh ] [ Open in Defender ↗ ] [ Unwatch ]" in step
    assert "[ Watch ]" not in step
    assert re.search(
        r"↳ posted in the thread in #incident: ◉ @alice is watching ws-fin-014\.contoso\.local until "
        r"[-\d]+ [:\d]+ UTC\. New alerts and status changes will appear in this thread\.",
        step,
    ), step
    assert re.search(
        r"↳ answered below the note, seen only by @alice: Watching ws-fin-014\.contoso\.local until [-\d]+ [:\d]+ UTC; "
        r"changes appear in the card's thread\.",
        step,
    ), step
    root, note, confirmation = scripted.posts[ROOT : CONFIRMATION + 1]
    assert (root.via, root.target, "thread_ts" in root.payload) == ("chat.postMessage", "C0INCIDENT", False)
    assert (note.via, note.payload["thread_ts"]) == ("chat.postMessage", root.payload["ts"])
    assert (confirmation.via, confirmation.replaced) == ("response_url", False)  # below the ack's note


def test_defender_changes_get_one_threaded_reply_and_the_root_card_is_updated(scripted: Run) -> None:
    step = scripted.step(8)
    assert "» Meanwhile in Defender (the simulator), on ws-fin-014.contoso.local:\n" in step
    assert "    a new High alert appears: Ransomware behavior detected\n" in step
    assert "    secops@contoso.com took Suspicious PowerShell command line (now In progress)\n" in step
    assert "» The watch poller checks Defender (every 60 s in production)\n" in step
    assert "  ↳ 1 Defender call for every watched device; 3 changes, grouped in 1 reply\n" in step
    assert "✗" not in step

    root, update, followup = scripted.posts[ROOT], scripted.posts[UPDATE], scripted.posts[FOLLOWUP]
    assert (update.via, update.payload["ts"]) == ("chat.update", root.payload["ts"])
    before = re.match(r"ws-fin-014\.contoso\.local: (\d+) alerts \(", root.payload["text"])
    assert before, root.payload["text"]
    assert "↳ updated the card in #incident in place (chat.update):\n" in step
    assert f"\n      ws-fin-014.contoso.local · {int(before[1]) + 1} alerts\n" in step  # one more than the root had
    assert re.search(r"^ +Status [^\n]*In progress 1", step, re.MULTILINE), step
    assert (followup.via, followup.payload["thread_ts"]) == ("chat.postMessage", root.payload["ts"])
    assert followup.payload["metadata"]["event_type"] == "device_alerts_followup"
    assert followup.payload["text"] == "ws-fin-014.contoso.local: 3 changes"
    shown = step[step.index("↳ posted in the thread in #incident:") :]
    assert "Suspicious PowerShell command line [1]: New → In progress" in shown
    assert "assigned to secops@contoso.com (was unassigned)" in flat(shown)
    assert "● New alert · High · Ransomware behavior detected [3] · Ransomware" in shown


def test_a_watch_that_reports_nothing_fails_the_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Poller, "run_once", lambda self, check=True: CycleReport(ran=True))
    run = play(monkeypatch)
    assert run.code == 1
    assert "✗ expected one reply in the card's thread and the card updated" in run.step(8)


def test_the_demo_writes_no_state_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    run = play(
        monkeypatch, "/device-alerts watch ws-fin-014\n/device-alerts watches\n/device-alerts unwatch ws-fin-014\n"
    )
    assert run.code == 0, run.out
    assert "↳ posted in #incident:" in run.out  # the root card
    assert "ws-fin-014.contoso.local by @alice since " in run.out  # `watches`, answered in the ack
    assert "answered below the note, seen only by @alice: Stopped watching ws-fin-014.contoso.local." in flat(run.out)
    assert list(tmp_path.iterdir()) == []


def test_details_open_from_the_cache_and_a_status_change_is_told_to_alice_and_the_watch(scripted: Run) -> None:
    details = flat(scripted.out[scripted.out.index("━━ 9. ") : scripted.out.index("━━ 10. ")])
    assert "Slack opens a window for @alice: Alert details" in details
    assert "Defender calls: 0 (the card's list was at hand)" in details
    assert "Open the alert in Defender" in details
    triage = flat(scripted.out[scripted.out.index("━━ 10. ") : scripted.out.index("━━ Summary")])
    assert "Slack opens a window for @alice: Set alert status" in triage
    assert "posted in #incident (visible only to @alice): Done: " in triage
    assert "status: New → Resolved" in triage
    redrawn, note, said = scripted.posts[-3:]
    assert redrawn.payload.get("replace_original") is True and note.payload.get("replace_original") is False
    assert said.payload.get("thread_ts") and "by <@U0ALICE> via Slack" in json.dumps(said.payload)


def test_summary(scripted: Run) -> None:
    summary = scripted.out[scripted.out.index(STEP_HEADINGS[-1]) :]
    assert "Signed requests sent: 10;" in summary
    slowest = re.search(r"slowest ack (\d+) ms", summary)
    assert slowest, summary
    assert int(slowest[1]) < 3000
    calls = re.search(r"Defender API calls the simulator received: (\d+)\.", summary)
    assert calls, summary
    assert int(calls[1]) > 0
    assert '"Run it in your workspace"' in summary  # a README heading
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "\n## Run it in your workspace\n" in readme


def test_the_default_output_fits_80_columns_but_for_single_urls(scripted: Run) -> None:
    """Only a line whose one long word is a URL (an alert's portal link, ~110 characters) may be wider."""
    assert "Block Kit Builder" not in scripted.out  # the links come with --links only
    wide = [line for line in scripted.out.splitlines() if len(line) > WIDTH]
    for line in wide:
        urls = URL.findall(line)
        assert len(urls) == 1 and len(urls[0]) > WIDTH // 2, line
        assert len(line.replace(urls[0], "")) <= WIDTH, line  # without the URL, the line fits
    assert max(len(line) for line in scripted.out.splitlines()) < 200
    assert all(len(line) <= WIDTH for line in scripted.out.splitlines() if "://" not in line)


def test_every_lookup_card_has_a_block_kit_builder_link_with_its_blocks(scripted_links: Run) -> None:
    scripted = scripted_links
    links = BUILDER_LINK.findall(scripted.out)
    # The four posted lookup cards, and the bad-input and help cards the bot acknowledged with. The watch
    # steps show device cards like those and skip the links (`--json` prints their payloads).
    assert len(links) == 6
    for post in scripted.posts[:LOOKUP_POSTS]:
        assert builder_url(post.message) in links
    assert "Block Kit Builder" not in scripted.out[scripted.out.index(STEP_HEADINGS[6]) :]
    for link in links:
        document = builder_blocks(link)
        assert set(document) == {"blocks"}
        assert isinstance(document["blocks"], list)
        assert document["blocks"]
        # The link belongs to a card printed in the transcript.
        first_line = render_text(Message("", document["blocks"])).splitlines()[0]
        assert f" {first_line}" in flat(scripted.out)


def test_nothing_secret_is_printed(scripted: Run, scripted_json: Run) -> None:
    for run in (scripted, scripted_json):
        assert SECRET not in run.out
        assert BOT_TOKEN not in run.out
        assert '"token"' not in run.out  # no token field in a printed payload


def test_json_option_prints_every_payload(scripted_json: Run) -> None:
    assert scripted_json.code == 0
    out = scripted_json.out
    decoder = json.JSONDecoder()
    payloads = []
    for marker in re.finditer(r"JSON payload:\n", out):
        payload, _ = decoder.raw_decode(out, out.index("{", marker.end()))
        payloads.append(payload)
    acks = [m.start() for m in re.finditer(r"↳ ack in \d+ ms, seen only by @alice", out)]
    shown = [m.start() for m in re.finditer(r"↳ (posted in|replaced the|updated the|answered below)", out)]
    # One per acknowledgement of a slash command (5) and one per message posted (12).
    assert (len(acks), len(shown), len(payloads)) == (5, 12, 17)
    for payload in payloads:
        assert payload["blocks"]
        assert payload["text"]
    # Each message the bot posted is followed by its payload, in the order the stand-in received them.
    marks = sorted([(a, "ack") for a in acks] + [(s, "post") for s in shown])
    posted = [payload for payload, (_, kind) in zip(payloads, marks, strict=True) if kind == "post"]
    assert [p["blocks"] for p in posted] == [p.message.blocks for p in scripted_json.posts]
    assert posted[UPDATE]["ts"] == posted[ROOT]["ts"]  # chat.update names the root card it redraws


# -- interactive mode and failures ----------------------------------------------------------------------------


def test_interactive_lookup_and_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    run = play(monkeypatch, "/device-alerts ws-fin-014\nrefresh\nquit\n/device-alerts never-sent\n")
    assert run.code == 0, run.out
    assert run.out.startswith("device-alerts demo (interactive")
    assert "» @alice in #incident: /device-alerts ws-fin-014\n" in run.out
    assert "posted in #incident (visible to everyone)" in run.out
    assert "replaced the card in #incident" in run.out
    assert "never-sent" not in run.out  # `quit` ended the session
    assert "Signed requests sent: 2;" in run.out
    assert len(run.posts) == 2
    assert SECRET not in run.out


def test_interactive_mention_hints_and_end_of_input(monkeypatch: pytest.MonkeyPatch) -> None:
    run = play(monkeypatch, "refresh\nhello\n\n@device-alerts srv-build-07 severity:high\n")
    assert run.code == 0, run.out
    assert "There is no card to refresh yet" in run.out
    assert "Type /device-alerts <device> [filters], @device-alerts <device>, refresh or quit" in run.out
    assert "» @alice in #incident: @device-alerts srv-build-07 severity:high" in run.out
    assert "posted in the thread in #incident" in run.out
    assert "Signed requests sent: 1;" in run.out


def test_demo_never_uses_a_real_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    simulator = simulator_settings()
    settings = replace(simulator, defender=replace(simulator.defender, backend=Backend.API))
    run = play(monkeypatch, "/device-alerts ws-fin-014\n", settings=settings)
    assert run.code == 0, run.out
    assert "ws-fin-014.contoso.local · " in run.out


def test_an_answer_that_never_arrives_fails_the_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    class ExpiredStandIn(SlackStandIn):
        def __init__(self) -> None:
            super().__init__()
            self.fail_next("response_url", status=404, error="expired_url", times=10)

    monkeypatch.setattr(demo, "POST_TIMEOUT", 0.5)
    out = io.StringIO()
    monkeypatch.setattr(demo, "SlackStandIn", ExpiredStandIn)
    stdin = io.StringIO("/device-alerts ws-fin-014\n")
    code = run_demo(simulator_settings(), out=out, interactive=True, stdin=stdin)
    assert code == 1
    assert "✗ no message from the bot" in out.getvalue()


def test_a_bot_that_cannot_reach_the_stand_in_is_explained_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as refusing:  # bound, not listening: the proxy refuses at once
        refusing.bind(("127.0.0.1", 0))
        for name in ("NO_PROXY", "no_proxy", "https_proxy", "HTTP_PROXY", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{refusing.getsockname()[1]}")
        out = io.StringIO()
        code = run_demo(simulator_settings(), out=out)
    assert code == 1
    assert out.getvalue() == ""
    assert "could not reach its local Slack stand-in" in capsys.readouterr().err


def test_ctrl_c_ends_the_demo_cleanly() -> None:
    class Interrupting:
        """Standard input where the person presses Ctrl-C."""

        def isatty(self) -> bool:
            return False

        def readline(self) -> str:
            raise KeyboardInterrupt

    out = io.StringIO()
    code = run_demo(simulator_settings(), out=out, interactive=True, stdin=cast(TextIO, Interrupting()))
    assert code == 130
    assert out.getvalue().endswith("Interrupted.\n")


# -- through the command line: `main(["demo", …])` -------------------------------------------------------------

SIMULATOR_NOTICE = "using the built-in Defender simulator"
DEMO_PEOPLE = (
    "» @alice in #incident: /device-alerts ws-fin-014",
    "» @alice in a thread: @device-alerts srv-build-07 severity:high since:7d",
    "» @alice presses [ Refresh ] on ws-fin-014.contoso.local",
    "» @alice in #incident: /device-alerts ws-fin-014 severity:urgent",
    f"» @alice in #incident: /device-alerts {HOSTILE_HOSTNAME.split('.')[0]}",
    "» @alice in #incident: /device-alerts help",
)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.usefixtures("cli_env")
def test_demo_plays_a_slack_session(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run("demo")
    assert code == 0, out + err
    for line in DEMO_PEOPLE:
        assert line in out
    assert "replaced the card in #incident" in out
    assert "unknown severity 'urgent'" in out
    assert "&lt;!channel&gt;" in out
    assert "Block Kit Builder" not in out  # only with --links
    assert "Defender API calls the simulator received:" in out
    assert "JSON payload:" not in out
    assert "\x1b" not in out
    assert SIMULATOR_NOTICE not in out
    # The scripted requests write no audit trail over the readable output.
    assert '"audit":' not in err + capsys.readouterr().err


@pytest.mark.usefixtures("cli_env")
def test_demo_links_option_prints_a_builder_link_under_each_lookup_card() -> None:
    code, out, err = run("demo", "--links")
    assert code == 0, out + err
    assert out.count("Block Kit Builder: https://app.slack.com/block-kit-builder#") == 6


def test_demo_help_names_json_and_links(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = capsys.readouterr().out
    assert "--json" in text and "--links" in text and "Block Kit Builder" in text


@pytest.mark.usefixtures("cli_env")
def test_demo_interactive_with_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("/device-alerts ws-fin-014\nrefresh\nquit\n"))
    code, out, err = run("demo", "--interactive", "--json")
    assert code == 0, out + err
    assert "replaced the card in #incident" in out
    assert out.count("JSON payload:") == 3  # the ack, the card, the refreshed card
    assert "Signed requests sent: 2;" in out


@pytest.mark.usefixtures("cli_env")
def test_demo_uses_the_simulator_even_when_the_api_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFENDER_BACKEND", "api")  # would be a config error for `alerts`
    monkeypatch.setattr(sys, "stdin", io.StringIO("/device-alerts ws-fin-014\n"))
    code, out, err = run("demo", "--interactive")
    assert code == 0, out + err
    assert "ws-fin-014.contoso.local · " in out
