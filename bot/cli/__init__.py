"""Command line: `python -m bot [http|socket|demo|alerts …]`.

Exit codes: 0 ok, 2 bad input or configuration, 3 device not found, 4 Defender, Slack or sign-in error.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
from collections.abc import Sequence
from typing import TextIO

from slack_bolt.error import BoltError
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.alerts.problems import ProblemKind, explain
from bot.alerts.query import USAGE, QueryError, parse_query
from bot.cli.drain import drain, stop_signals, wait_for
from bot.cli.terminal import PortalContext, render
from bot.config import (
    ConfigError,
    Settings,
    SlackMode,
    check_server_backend,
    load_settings,
    load_slack_settings,
    read_environment,
    slack_mode,
)
from bot.defender.errors import DefenderError
from bot.demo.session import run_demo
from bot.runtime import Runtime, SlackBot, build_runtime, build_slack_bot
from bot.slack.bolt import StartupError
from bot.slack.server import ListenError, serve_http
from bot.slack.socket_mode import SocketModeConnection
from bot.state.sqlite import StoreUnopenable
from bot.telemetry import logs
from bot.text import clean

EXIT_OK, EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_DEFENDER = 0, 2, 3, 4


_EXIT_CODES = {ProblemKind.BAD_INPUT: EXIT_BAD_INPUT, ProblemKind.NOT_FOUND: EXIT_NOT_FOUND}


def describe_failure(exc: Exception) -> tuple[int, str]:
    """Exit code and an actionable explanation of a failed lookup, for the terminal."""
    problem = explain(exc)
    lines = [clean(problem.summary, 300)]
    if problem.suggestions:
        lines.append("Did you mean: " + ", ".join(clean(s, 80) for s in problem.suggestions) + "?")
    if problem.operator_detail:
        lines.append(clean(problem.operator_detail, 500))
    if problem.hint:
        lines.append(problem.hint)
    if problem.tracking_id:
        lines.append(f"Defender tracking id: {clean(problem.tracking_id, 80)}")
    if problem.kind is ProblemKind.BAD_INPUT:
        lines.append(f"usage: python -m bot alerts {USAGE}")
    return _EXIT_CODES.get(problem.kind, EXIT_DEFENDER), "\n".join(lines)


def lookup(runtime: Runtime, text: str, out: TextIO, err: TextIO) -> int:
    """Run one lookup and print the result (to `out`) or why it failed (to `err`); return the exit code."""
    try:
        query = parse_query(text)
        result = runtime.service.device_alerts(query.device, query.filters)
    except (QueryError, DefenderError) as exc:
        code, message = describe_failure(exc)
        print(message, file=err)
        return code
    print(render(result, PortalContext(runtime.settings.defender.portal_url, runtime.link_tenant_id)), file=out)
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="device-alerts: Microsoft Defender for Endpoint alerts per device, in Slack and the terminal.",
        epilog="With no command: Socket Mode when SLACK_APP_TOKEN is set, otherwise HTTP mode.",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("http", help="serve Slack over HTTP on 0.0.0.0:$PORT (default 3000)")
    commands.add_parser("socket", help="connect to Slack in Socket Mode (SLACK_APP_TOKEN)")
    demo = commands.add_parser("demo", help="play a scripted Slack session against the built-in simulator")
    demo.add_argument("--json", action="store_true", help="also print each message's Block Kit JSON payload")
    demo.add_argument(
        "--links", action="store_true", help="also print a Block Kit Builder link under each card (long URLs)"
    )
    demo.add_argument("--interactive", action="store_true", help="type /device-alerts lines yourself")
    alerts = commands.add_parser(
        "alerts", help="summarize one device's alerts in the terminal", usage=f"%(prog)s {USAGE}"
    )
    alerts.add_argument("query", nargs="+", help="device reference and optional filters")
    return parser


def _no_core_dumps() -> None:
    """A core dump of a server process would hold its tokens and secrets: allow none."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _build(
    mode: SlackMode,
    settings: Settings,
    env: dict[str, str],
    err: TextIO,
    *,
    defender_url: str | None,
    poll_seconds: float | None,
) -> SlackBot | int:
    """The Slack bot, or the exit code after one line on `err` saying what to fix."""
    try:
        slack = load_slack_settings(mode, env)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=err)
        return EXIT_BAD_INPUT
    runtime = build_runtime(settings, defender_url=defender_url, warm_up=True)
    try:
        return build_slack_bot(runtime, slack, poll_seconds=poll_seconds)
    except StoreUnopenable as exc:
        print(
            f"configuration error: BOT_STATE_URL: {exc}: point it at a file in a directory the bot can write to",
            file=err,
        )
        code = EXIT_BAD_INPUT
    except StartupError as exc:
        print(exc, file=err)
        code = EXIT_DEFENDER
    except (BoltError, SlackClientError, OSError) as exc:
        print(
            f"Slack refused the bot token or could not be reached ({exc}): check SLACK_BOT_TOKEN and SLACK_API_URL",
            file=err,
        )
        code = EXIT_DEFENDER
    runtime.close()
    return code


def _serve(
    mode: SlackMode,
    settings: Settings,
    env: dict[str, str],
    err: TextIO,
    *,
    defender_url: str | None = None,
    poll_seconds: float | None = None,
) -> int:
    """Run the Slack app until SIGTERM or SIGINT, then drain (`bot.cli.drain`) and exit 0."""
    _no_core_dumps()
    bot = _build(mode, settings, env, err, defender_url=defender_url, poll_seconds=poll_seconds)
    if isinstance(bot, int):
        return bot
    try:
        with stop_signals() as stopping:
            listening = SocketModeConnection(bot) if mode is SlackMode.SOCKET else serve_http(bot)
            bot.start_background()
            try:
                wait_for(stopping)
                if isinstance(listening, SocketModeConnection):
                    listening.stop_taking_work()
                drain(bot, bot.settings.drain_seconds)
            finally:
                listening.close()
    except ListenError as exc:
        print(f"start-up error: PORT: {exc}: stop what uses it, or set PORT (or BOT_HTTP_HOST) to a free one", file=err)
        return EXIT_BAD_INPUT
    except SlackApiError as exc:
        print(
            f"Slack refused the Socket Mode connection ({exc.response.get('error')}): check SLACK_APP_TOKEN", file=err
        )
        return EXIT_DEFENDER
    finally:
        bot.close()
    return EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    defender_url: str | None = None,
    poll_seconds: float | None = None,
) -> int:
    """`python -m bot …`. `defender_url` and `poll_seconds` are for tests that run several bot processes
    (tests/doubles/bot_process.py), never set from the command line or the environment: see `build_runtime`
    and `build_slack_bot`."""
    args = _parser().parse_args(argv)
    env = read_environment()  # the environment over `.env`, read once for every setting
    command = args.command or slack_mode(env).value
    if command == "demo":
        env["DEFENDER_BACKEND"] = "simulator"
    try:
        settings = load_settings(env)
        if command in ("http", "socket"):  # the simulator only when asked: the demo and the CLI keep the default
            check_server_backend(settings.defender)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=err)
        return EXIT_BAD_INPUT
    terminal = command in ("alerts", "demo")
    logs.configure(settings.logging.level or ("WARNING" if terminal else "INFO"), settings.logging.format, err)
    if settings.logging.level != "DEBUG":
        # One line per HTTP request is noise at INFO; the client logs what matters (errors, tracking ids).
        logging.getLogger("httpx").setLevel(logging.WARNING)
    if settings.defender.defaulted:
        print("No Defender credentials configured: using the built-in Defender simulator.", file=err)
    if command in ("http", "socket"):
        return _serve(SlackMode(command), settings, env, err, defender_url=defender_url, poll_seconds=poll_seconds)
    if command == "demo":
        return run_demo(settings, out=out, as_json=args.json, links=args.links, interactive=args.interactive)
    runtime = build_runtime(settings)
    try:
        return lookup(runtime, " ".join(args.query), out, err)
    finally:
        runtime.close()
