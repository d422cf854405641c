"""Rotating the signing secret: `SLACK_SIGNING_SECRET_PREVIOUS` keeps requests and old cards' buttons working.

Requests signed with the previous secret are accepted only while it is configured; forged ones are still
refused with 401 before any listener runs. A button sealed under the previous secret opens after the rotation,
and is refused once the previous secret is removed. Start-up with Slack unreachable fails in one line.
"""

from __future__ import annotations

import io
import logging
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.cli import main
from bot.config import SlackMode, load_settings, load_slack_settings
from bot.demo.slack_requests import SlackRequests
from bot.demo.standin import SlackStandIn
from bot.runtime import build_runtime, build_slack_bot
from bot.slack import actions, details, listeners
from bot.slack.bolt import StartupError, installation
from bot.slack.server import HttpServer, wsgi_app
from tests.doubles import secrets as fake_secrets
from tests.doubles.slack import Harness, all_text, buttons, close_server, close_soon, harness

OLD = fake_secrets.SIGNING_SECRET  # what the harness signs with
NEW = fake_secrets.ROTATED_SIGNING_SECRET
QUIET = {"BOT_AUDIT_LOG": "off", "BOT_USER_RATE_PER_MINUTE": "0", "BOT_CHANNEL_RATE_PER_MINUTE": "0"}
ROTATING = {**QUIET, "SLACK_SIGNING_SECRET": NEW, "SLACK_SIGNING_SECRET_PREVIOUS": OLD}
ROTATED = {**QUIET, "SLACK_SIGNING_SECRET": NEW}


@pytest.fixture
def rotating() -> Iterator[Harness]:
    yield from harness(env=ROTATING)


@pytest.fixture
def rotated() -> Iterator[Harness]:
    yield from harness(env=ROTATED)


def _old_card_value() -> str:
    """The Refresh value of a card posted before the rotation (sealed under the old secret)."""
    for rig in harness(env=QUIET):
        rig.command("ws-fin-014", "before-rotation")
        [card] = rig.standin.wait_for_posts(1)
        rig.wait_idle()
        return str(buttons(card)[actions.REFRESH]["value"])
    raise AssertionError("no bot")


def _count_jobs(rig: Harness, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    jobs = [0]
    submit = rig.bot.pool.submit

    def counting(job: object, on_abandon: object = None) -> bool:
        jobs[0] += 1
        return submit(job, on_abandon)  # type: ignore[arg-type]

    monkeypatch.setattr(rig.bot.pool, "submit", counting)
    for module in (listeners, details):  # every notice sent off the request thread
        monkeypatch.setattr(module, "in_background", lambda work: jobs.__setitem__(0, jobs[0] + 1))
    return jobs


def test_requests_signed_with_the_previous_or_the_current_secret_are_served(rotating: Harness) -> None:
    assert rotating.command("ws-fin-014", "old").status == 200  # signed with the previous secret
    rotating.requests = SlackRequests(NEW)
    assert rotating.command("ws-fin-014", "new").status == 200
    posts = rotating.standin.wait_for_posts(2)
    assert {p.target for p in posts} == {"old", "new"}


def test_the_previous_secret_is_refused_once_removed(rotated: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = _count_jobs(rotated, monkeypatch)
    assert rotated.command("ws-fin-014").status == 401  # signed with the old secret, no longer configured
    time.sleep(0.1)
    assert jobs == [0] and rotated.standin.posts == []
    rotated.requests = SlackRequests(NEW)
    assert rotated.command("ws-fin-014").status == 200


@pytest.mark.parametrize("kind", ["command", "event", "button"])
def test_forged_requests_are_still_refused_during_the_overlap(
    rotating: Harness, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    jobs = _count_jobs(rotating, monkeypatch)
    calls = len(rotating.standin.calls)
    for secret in (fake_secrets.FOREIGN_SIGNING_SECRET, OLD + "x", ""):
        forger = SlackRequests(secret) if secret else rotating.requests
        url = rotating.standin.response_url("forged")
        if kind == "command":
            body, headers = forger.command("ws-fin-014", response_url=url)
        elif kind == "event":
            body, headers = forger.event(forger.mention("ws-fin-014"))
        else:
            body, headers = forger.block_action(actions.REFRESH, "x.y", response_url=url)
        if not secret:  # signed by a genuine secret, then changed
            body = body.replace(b"ws-fin-014", b"ws-fin-015")
            headers = {**headers, "X-Slack-Signature": headers["X-Slack-Signature"][::-1]}
        assert rotating.dispatch((body, headers)).status == 401
    time.sleep(0.1)
    assert jobs == [0]
    assert len(rotating.standin.calls) == calls and rotating.standin.posts == []


def test_over_http_both_secrets_pass_and_a_forgery_gets_401(rotating: Harness) -> None:
    server = HttpServer(wsgi_app(rotating.bot.health, SlackRequestHandler(rotating.bot.app)), "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{server.port}/slack/events"
    try:
        with httpx.Client(timeout=10.0) as client:
            for secret, status in ((OLD, 200), (NEW, 200), (fake_secrets.FOREIGN_SIGNING_SECRET, 401)):
                body, headers = SlackRequests(secret).command("ws-fin-014", response_url="http://127.0.0.1:9/x")
                assert client.post(url, content=body, headers=headers).status_code == status
            rotating.wait_idle()
    finally:
        close_server(server)


def test_a_card_from_before_the_rotation_still_refreshes(rotating: Harness) -> None:
    value = _old_card_value()
    rotating.requests = SlackRequests(NEW)
    assert rotating.press(actions.REFRESH, value).status == 200
    [answer] = rotating.standin.wait_for_posts(1)
    assert listeners.INVALID_BUTTON not in all_text(answer.payload)
    assert "ws-fin-014" in all_text(answer.payload)
    new_value = buttons(answer)[actions.REFRESH]["value"]
    assert new_value != value and actions.ButtonSeal.from_secret(NEW).open(new_value)  # sealed with the new key


def test_once_the_previous_secret_is_removed_old_buttons_ask_to_run_the_command_again(rotated: Harness) -> None:
    value = _old_card_value()
    rotated.requests = SlackRequests(NEW)
    assert rotated.press(actions.REFRESH, value).status == 200
    [answer] = rotated.standin.wait_for_posts(1)
    assert listeners.INVALID_BUTTON in all_text(answer.payload)


# -- start-up -----------------------------------------------------------------------------------------------------


def _unreachable_api() -> tuple[socket.socket, str]:
    refusing = socket.socket()  # bound, not listening: connections are refused at once
    refusing.bind(("127.0.0.1", 0))
    return refusing, f"http://127.0.0.1:{refusing.getsockname()[1]}/api/"


def test_an_unreachable_slack_fails_start_up_at_once_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    refusing, api = _unreachable_api()
    with refusing:
        settings = load_slack_settings(
            SlackMode.HTTP,
            {"SLACK_BOT_TOKEN": fake_secrets.BOT_TOKEN, "SLACK_SIGNING_SECRET": OLD, "SLACK_API_URL": api},
        )
        runtime = build_runtime(load_settings({"BOT_STATE_URL": "sqlite:///:memory:"}))
        started = time.monotonic()
        with caplog.at_level(logging.DEBUG), pytest.raises(StartupError) as raised:
            build_slack_bot(runtime, settings)
        runtime.close()
    assert time.monotonic() - started < 2  # no retries with back-off
    message = str(raised.value)
    assert "\n" not in message and "could not be reached" in message and "SLACK_API_URL" in message
    assert not [r for r in caplog.records if "retry" in r.getMessage().lower()]


def test_python_m_bot_http_with_slack_unreachable_says_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    refusing, api = _unreachable_api()
    for name, value in (("SLACK_BOT_TOKEN", fake_secrets.BOT_TOKEN), ("SLACK_SIGNING_SECRET", OLD)):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLACK_API_URL", api)
    monkeypatch.setenv("BOT_STATE_URL", "sqlite:///:memory:")
    monkeypatch.setenv("DEFENDER_BACKEND", "simulator")  # `http` serves the simulator only when asked to
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    err = io.StringIO()
    with refusing:
        code = main(["http"], err=err)
    assert code == 4
    lines = [line for line in err.getvalue().splitlines() if line.strip() and "Defender simulator" not in line]
    assert len(lines) == 1, lines
    assert "could not be reached" in lines[0]


def test_a_refused_bot_token_is_one_line_and_bolt_warns_about_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    standin = SlackStandIn()
    try:
        env = {"SLACK_BOT_TOKEN": fake_secrets.BOT_TOKEN, "SLACK_SIGNING_SECRET": OLD, "SLACK_API_URL": standin.api_url}
        with pytest.raises(StartupError, match="refused the bot token"):
            installation(load_slack_settings(SlackMode.HTTP, env))
        # With SLACK_BOT_TOKEN in the environment, Bolt would warn that `client` wins over it.
        monkeypatch.setenv("SLACK_BOT_TOKEN", standin.bot_token)
        env["SLACK_BOT_TOKEN"] = standin.bot_token
        runtime = build_runtime(load_settings({"BOT_STATE_URL": "sqlite:///:memory:"}))
        with caplog.at_level(logging.DEBUG):
            bot = build_slack_bot(runtime, load_slack_settings(SlackMode.HTTP, env))
        bot.close()
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "token" in r.getMessage()]
    finally:
        close_soon(standin)


@pytest.mark.parametrize("timestamp", ["abc", "", "1e9", " 12", "9" * 40, "-1"])
def test_a_malformed_timestamp_is_a_plain_401_with_no_side_effect(
    rotating: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, timestamp: str
) -> None:
    """A timestamp that is not a number must not make the check raise: no error handler, no 500, no log of it."""
    jobs = _count_jobs(rotating, monkeypatch)
    calls = len(rotating.standin.calls)
    url = rotating.standin.response_url("malformed")
    body, headers = rotating.requests.command("ws-fin-014", response_url=url)
    with caplog.at_level(logging.DEBUG):
        status = rotating.dispatch((body, {**headers, "X-Slack-Request-Timestamp": timestamp})).status
    assert status == 401
    time.sleep(0.1)
    assert jobs == [0] and rotating.standin.posts == [] and len(rotating.standin.calls) == calls
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "ws-fin-014" not in caplog.text
