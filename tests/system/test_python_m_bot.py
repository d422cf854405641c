"""`python -m bot …` as its own process: what a new user runs, `http` and `socket` serving Slack, start-up
errors, and the log format.

Each process starts in an empty directory (no `.env`) with only the environment a test gives it; Slack is a
`SlackStandIn` on 127.0.0.1 and Defender the built-in simulator.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.demo.slack_requests import SlackRequests
from bot.demo.standin import SlackStandIn
from tests.doubles.processes import BotProcess, BotProcesses, bot_command, free_port, wait_until
from tests.doubles.slack import SIGNING_SECRET, close_soon, header

SIMULATOR_NOTICE = "using the built-in Defender simulator"
SIMULATOR = {"DEFENDER_BACKEND": "simulator"}  # `http` and `socket` serve the simulator only when asked to
STARTUP_TIMEOUT = 20.0


def run_bot_clean(tmp_path: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot …` as a new user runs it: a clean environment, stdout a pipe, no .env nearby."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **variables}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )


# -- what a new user runs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["mde", "graph"])
def test_python_dash_m_bot_demo_in_a_clean_environment(tmp_path: Path, api: str) -> None:
    """The README's first command, with stdout a pipe rather than a terminal; offline on either Microsoft API."""
    completed = run_bot_clean(tmp_path, "demo", DEFENDER_API=api)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("device-alerts demo: ")
    assert "━━ Summary " in completed.stdout
    assert "Block Kit Builder" not in completed.stdout  # links only with --links
    # 80 columns, but for the lines that hold one long URL (an alert's portal link)
    assert all(len(line) <= 80 for line in completed.stdout.splitlines() if "://" not in line)


def test_python_dash_m_bot_in_a_clean_environment(tmp_path: Path) -> None:
    completed = run_bot_clean(tmp_path, "alerts", "ws-fin-014")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("ws-fin-014.contoso.local: ")
    assert "https://security.microsoft.com/alerts/" in completed.stdout
    assert SIMULATOR_NOTICE in completed.stderr


# -- http and socket -------------------------------------------------------------------------------------------


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    stand_in = SlackStandIn()
    yield stand_in
    close_soon(stand_in)


@pytest.fixture
def bots(tmp_path: Path) -> Iterator[BotProcesses]:
    """`python -m bot …` processes in an empty directory (no .env), with only the environment given."""
    started = BotProcesses(tmp_path)
    yield started
    started.stop()


def test_python_m_bot_http_serves_slack(bots: BotProcesses, standin: SlackStandIn) -> None:
    env = {
        "SLACK_BOT_TOKEN": standin.bot_token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": standin.api_url,
        **SIMULATOR,
    }
    process = bots.start(bot_command("http"), env, port=free_port())
    base = process.url
    wait_until(process.healthy, STARTUP_TIMEOUT, "/healthz", [process])
    health = httpx.get(f"{base}/healthz", timeout=5.0).json()
    assert (health["status"], health["defender_backend"]) == ("ok", "simulator")
    # The bot token was checked at start-up (Bolt's check and the access gate's workspace lookup).
    assert {method for method, _ in standin.calls} == {"auth.test"}

    body, headers = SlackRequests(SIGNING_SECRET).command("ws-fin-014", response_url=standin.response_url("proc"))
    response = httpx.post(f"{base}/slack/events", content=body, headers=headers, timeout=5.0)
    assert response.status_code == 200
    assert response.json()["text"] == "Looking up ws-fin-014…"
    [card] = standin.wait_for_posts(1, timeout=10)
    assert card.target == "proc"
    assert header(card).startswith("ws-fin-014.contoso.local · ")

    limits = Path(f"/proc/{process.popen.pid}/limits")
    if limits.exists():  # Linux: a server process allows no core dump (it would hold the secrets)
        [core] = [line.split() for line in limits.read_text().splitlines() if line.startswith("Max core file size")]
        assert core[4:6] == ["0", "0"], core

    process.popen.terminate()
    process.popen.wait(timeout=10)
    assert SIGNING_SECRET not in process.stderr
    assert standin.bot_token not in process.stderr


def test_python_m_bot_http_gives_an_attacker_401_413_and_no_trace(bots: BotProcesses, standin: SlackStandIn) -> None:
    """The edge of a real process, attacked as docs/security.md lists: unparsable unsigned bodies, a malformed
    timestamp, a forged header line, a huge Content-Length and 150 idle connections; a signed command still gets
    its acknowledgement within Slack's 3 s, and stderr holds no traceback and nothing the attacker sent."""
    env = {**slack_variables(standin), **SIMULATOR, "LOG_LEVEL": "DEBUG"}
    process = bots.start(bot_command("http"), env, port=free_port())
    wait_until(process.healthy, STARTUP_TIMEOUT, "/healthz", [process])
    events = f"{process.url}/slack/events"
    port = int(process.url.rsplit(":", 1)[1])
    form = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Signature": "v0=" + "0" * 64}
    attacks = [
        (
            b'{"type":"event_callback","response_url":"http://127.0.0.1:9/evil"}',
            {**form, "X-Slack-Request-Timestamp": "abc"},
        ),
        (b"payload=%7Bnot-json-evil", {**form, "X-Slack-Request-Timestamp": str(int(time.time()))}),
        (b"[" * 100_000, {**form, "Content-Type": "application/json", "X-Slack-Request-Timestamp": "1"}),
    ]
    for body, headers in attacks:
        assert httpx.post(events, content=body, headers=headers, timeout=5.0).status_code == 401
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 209715200\r\n\r\n")
        assert connection.recv(4096).startswith(b"HTTP/1.1 413")
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(150)]
    try:
        for connection in idle:
            connection.sendall(b"POST /slack/events HTTP/1.1\r\nX-Evil: ")
        body, headers = SlackRequests(SIGNING_SECRET).command("ws-fin-014", response_url=standin.response_url("edge"))
        started = time.monotonic()
        assert httpx.post(events, content=body, headers=headers, timeout=5.0).status_code == 200
        assert time.monotonic() - started < 3.0
    finally:
        for connection in idle:
            connection.close()
    standin.wait_for_posts(1, timeout=10)
    process.popen.terminate()
    process.popen.wait(timeout=10)
    assert [post.target for post in standin.posts] == ["edge"]  # nothing went to the attacker's URL
    log = process.stderr
    assert "Traceback" not in log and "evil" not in log.lower() and "not-json" not in log
    assert "failed verification" in log


def test_python_m_bot_http_without_signing_secret_exits_2(bots: BotProcesses, standin: SlackStandIn) -> None:
    env = {
        "SLACK_BOT_TOKEN": standin.bot_token,
        "SLACK_API_URL": standin.api_url,
        "PORT": str(free_port()),
        **SIMULATOR,
    }
    process = bots.start(bot_command("http"), env)
    assert process.popen.wait(timeout=STARTUP_TIMEOUT) == 2
    assert "configuration error: SLACK_SIGNING_SECRET: required for http mode" in process.stderr
    assert standin.calls == []  # refused before talking to Slack


# -- configuration that fails closed: one line naming the variable and the fix, exit 2 ------------------------------


def slack_variables(standin: SlackStandIn) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": standin.bot_token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": standin.api_url,
    }


def failed_start(process: BotProcess) -> str:
    """The one line a process that refused to start wrote on stderr (it exited 2, with no traceback)."""
    assert process.popen.wait(timeout=STARTUP_TIMEOUT) == 2, process.stderr
    assert "Traceback" not in process.stderr
    [line] = [line for line in process.stderr.splitlines() if "error: " in line]
    return line


@pytest.mark.parametrize("mode", ["http", "socket"])
def test_servers_refuse_the_simulator_unless_asked(bots: BotProcesses, standin: SlackStandIn, mode: str) -> None:
    env = {**slack_variables(standin), "SLACK_APP_TOKEN": standin.app_token}
    assert failed_start(bots.start(bot_command(mode), env, port=free_port())) == (
        "configuration error: DEFENDER_BACKEND: no Defender tenant is configured; set DEFENDER_TENANT_ID, "
        "DEFENDER_CLIENT_ID and DEFENDER_CLIENT_SECRET, or DEFENDER_BACKEND=simulator to serve the built-in simulator"
    )
    assert standin.calls == []  # refused before talking to Slack


@pytest.mark.parametrize(
    ("misspelled", "meant"),
    [
        ("BOT_ALLOWED_CHANNEL", "BOT_ALLOWED_CHANNELS"),
        ("DEFENDER_BACKGROUND_HOUR_SHARES", "DEFENDER_BACKGROUND_HOUR_SHARE"),
        ("SLACK_SIGNING_SECRETS", "SLACK_SIGNING_SECRET"),
    ],
)
def test_a_misspelled_variable_stops_start_up(
    bots: BotProcesses, standin: SlackStandIn, misspelled: str, meant: str
) -> None:
    env = {**slack_variables(standin), **SIMULATOR, misspelled: "C0SOC"}
    assert failed_start(bots.start(bot_command("http"), env, port=free_port())) == (
        f"configuration error: {misspelled} is not a setting; did you mean {meant}?"
    )
    assert standin.calls == []


def test_a_misspelled_variable_stops_the_terminal_commands_too(tmp_path: Path) -> None:
    completed = run_bot_clean(tmp_path, "alerts", "ws-fin-014", BOT_ALLOWED_CHANNEL="C0SOC")
    assert completed.returncode == 2
    assert completed.stderr.strip() == (
        "configuration error: BOT_ALLOWED_CHANNEL is not a setting; did you mean BOT_ALLOWED_CHANNELS?"
    )


@pytest.mark.parametrize("where", ["missing-directory", "under-a-file", "a-directory", "not-a-database"])
def test_an_unopenable_state_file_is_one_line(
    tmp_path: Path, bots: BotProcesses, standin: SlackStandIn, where: str
) -> None:
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-directory.db").mkdir()
    (tmp_path / "notes.db").write_text("not a database, only text\n" * 100)
    path, reason = {
        "missing-directory": (tmp_path / "nonexistent-dir" / "x.db", "No such file or directory"),
        "under-a-file": (tmp_path / "a-file" / "x.db", "Not a directory"),
        "a-directory": (tmp_path / "a-directory.db", "unable to open database file"),
        "not-a-database": (tmp_path / "notes.db", "file is not a database"),
    }[where]
    env = {**slack_variables(standin), **SIMULATOR, "BOT_STATE_URL": f"sqlite:///{path}"}
    assert failed_start(bots.start(bot_command("http"), env, port=free_port())) == (
        f"configuration error: BOT_STATE_URL: cannot open the SQLite file '{path}' ({reason}): point it at a file "
        "in a directory the bot can write to"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to any directory")
def test_a_state_file_in_a_read_only_directory_is_one_line(
    tmp_path: Path, bots: BotProcesses, standin: SlackStandIn
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        env = {**slack_variables(standin), **SIMULATOR, "BOT_STATE_URL": f"sqlite:///{locked}/x.db"}
        line = failed_start(bots.start(bot_command("http"), env, port=free_port()))
    finally:
        locked.chmod(0o700)
    assert line.startswith("configuration error: BOT_STATE_URL: cannot open the SQLite file")
    assert "(Permission denied)" in line


def test_a_busy_port_is_one_line(bots: BotProcesses, standin: SlackStandIn) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**slack_variables(standin), **SIMULATOR, "BOT_HTTP_HOST": "127.0.0.1"}
        line = failed_start(bots.start(bot_command("http"), env, port=port))
    assert line == (
        f"start-up error: PORT: cannot listen on 127.0.0.1 port {port} (Address already in use): stop what uses it, "
        "or set PORT (or BOT_HTTP_HOST) to a free one"
    )


def test_python_m_bot_with_app_token_runs_socket_mode(bots: BotProcesses, standin: SlackStandIn) -> None:
    env = {
        "SLACK_BOT_TOKEN": standin.bot_token,
        "SLACK_APP_TOKEN": standin.app_token,
        "SLACK_API_URL": standin.api_url,
        **SIMULATOR,
    }
    process = bots.start(bot_command(), env)  # no sub-command: SLACK_APP_TOKEN picks Socket Mode
    opened = lambda: any(m == "apps.connections.open" for m, _ in standin.calls)  # noqa: E731
    wait_until(opened, 15.0, "apps.connections.open", [process])
    methods = [method for method, _ in standin.calls]
    assert methods[0] == "auth.test"
    assert "apps.connections.open" in methods
    # The stand-in answers `invalid_auth` to any other token, so this error means the app token was sent.
    deadline = time.monotonic() + 10.0
    while "stand_in_has_no_websocket" not in process.stderr and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "Failed to retrieve WSS URL" in process.stderr
    assert "stand_in_has_no_websocket" in process.stderr
    assert "invalid_auth" not in process.stderr
    assert standin.app_token not in process.stderr


def test_python_m_bot_socket_with_a_refused_app_token_fails_cleanly(bots: BotProcesses, standin: SlackStandIn) -> None:
    env = {
        "SLACK_BOT_TOKEN": standin.bot_token,
        "SLACK_APP_TOKEN": "xapp-1-refused",
        "SLACK_API_URL": standin.api_url,
        **SIMULATOR,
    }
    process = bots.start(bot_command("socket"), env)
    code = process.popen.wait(timeout=STARTUP_TIMEOUT)
    assert "Traceback" not in process.stderr
    assert "SLACK_APP_TOKEN" in process.stderr
    assert code == 4


# -- the log format ----------------------------------------------------------------------------------------------


def test_log_format_json_from_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot", "alerts", "ws-fin-014"],
        env={"PATH": "/usr/bin:/bin", "LOG_FORMAT": "json", "LOG_LEVEL": "info", "BOT_STATE_URL": "sqlite:///:memory:"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert records, done.stderr
    assert all({"time", "level", "logger", "message", "correlation_id"} <= set(r) for r in records)


def test_a_bad_log_format_is_a_configuration_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot", "alerts", "ws-fin-014"],
        env={"PATH": "/usr/bin:/bin", "LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "LOG_FORMAT: expected text | json" in done.stderr
