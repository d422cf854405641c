"""Command line: `python -m bot alerts <device> [filters]` and `python -m bot demo`.

Exit codes: 0 ok, 2 bad input or configuration, 3 device not found, 4 Defender or auth error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from bot.alerts.budget import Api, BudgetExhausted
from bot.alerts.query import USAGE, QueryError, parse_query
from bot.config import Backend, ConfigError, Settings, load_settings
from bot.defender.errors import AuthError, DefenderError, DeviceNotFound, PermissionDenied, Throttled
from bot.defender.simulator import AAD_TENANT_ID, BUSY_HOSTNAME, HOSTILE_HOSTNAME
from bot.runtime import Runtime, build_runtime
from bot.terminal import PortalContext, clean, render

EXIT_OK, EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_DEFENDER = 0, 2, 3, 4


def describe_failure(exc: Exception) -> tuple[int, str]:
    """Exit code and a one-line, actionable explanation for a failed lookup."""
    if isinstance(exc, QueryError):
        return EXIT_BAD_INPUT, f"{clean(str(exc), 300)}\nusage: python -m bot alerts {USAGE}"
    if isinstance(exc, DeviceNotFound):
        hint = f" Did you mean: {', '.join(exc.suggestions)}?" if exc.suggestions else ""
        return EXIT_NOT_FOUND, f"No device in Defender matches '{clean(exc.reference, 80)}'.{hint}"
    if isinstance(exc, PermissionDenied):
        return EXIT_DEFENDER, (
            f"Defender refused the request: {clean(exc.message, 300)}\n"
            "Grant the app registration the Alert.Read.All and Machine.Read.All application permissions "
            "(WindowsDefenderATP API) and an admin's consent."
        )
    if isinstance(exc, Throttled | BudgetExhausted):
        return EXIT_DEFENDER, f"{exc}. Try again in {exc.retry_after:.0f} s."
    if isinstance(exc, AuthError):
        return EXIT_DEFENDER, f"Could not sign in to Defender: {clean(str(exc), 500)}"
    if isinstance(exc, DefenderError):
        tracking = f" (Defender tracking id {exc.target})" if exc.target else ""
        return EXIT_DEFENDER, f"Defender lookup failed: {clean(exc.message, 300)}{tracking}"
    raise exc


def _portal(settings: Settings) -> PortalContext:
    tenant = AAD_TENANT_ID if settings.backend is Backend.SIMULATOR else settings.tenant_id
    return PortalContext(settings.portal_url, tenant)


def lookup(runtime: Runtime, text: str, out: TextIO, err: TextIO) -> int:
    """Run one lookup and print the result (to `out`) or why it failed (to `err`); return the exit code."""
    try:
        query = parse_query(text)
        result = runtime.service.device_alerts(query.device, query.filters)
    except (QueryError, DefenderError, BudgetExhausted) as exc:
        code, message = describe_failure(exc)
        print(message, file=err)
        return code
    print(render(result, _portal(runtime.settings)), file=out)
    return EXIT_OK


def _demo(runtime: Runtime, out: TextIO) -> int:
    """A scripted tour of the bot's lookups against the built-in simulator."""
    steps = [
        ("A device by hostname", "ws-fin-014"),
        (
            "The same device with filters: served from the same cached call",
            "ws-fin-014 severity:high,medium status:new,inprogress",
        ),
        ("Hostile alert text is neutralised", f"{HOSTILE_HOSTNAME} status:new"),
        ("A device with 500 alerts", f"{BUSY_HOSTNAME} since:7d"),
        ("A name that matches several devices", "ws"),
        ("Bad input never reaches Defender", "ws-fin-014 severity:urgent"),
    ]
    for title, text in steps:
        print(f"\n=== {title}\n$ python -m bot alerts {text}\n", file=out)
        lookup(runtime, text, out, out)
    calls = {api.value: runtime.budget.usage(api).used_last_minute for api in Api}
    print(f"\nDefender calls made in this demo: {calls}", file=out)
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="device-alerts: Defender alerts per device.")
    commands = parser.add_subparsers(dest="command", required=True)
    alerts = commands.add_parser(
        "alerts", help="summarize one device's alerts in the terminal", usage=f"%(prog)s {USAGE}"
    )
    alerts.add_argument("query", nargs="+", help="device reference and optional filters")
    commands.add_parser("demo", help="a scripted tour against the built-in Defender simulator (no credentials)")
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ)
    if args.command == "demo":
        env["DEFENDER_BACKEND"] = "simulator"
    try:
        settings = load_settings(env)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=err)
        return EXIT_BAD_INPUT
    logging.basicConfig(level=settings.log_level or "WARNING", stream=err)
    if settings.backend_defaulted:
        print("No Defender credentials configured: using the built-in Defender simulator.", file=err)
    runtime = build_runtime(settings)
    try:
        if args.command == "demo":
            return _demo(runtime, out)
        return lookup(runtime, " ".join(args.query), out, err)
    finally:
        runtime.close()
