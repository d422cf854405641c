"""`python -m tests.doubles.bot_process [--defender-url URL] [--poll-seconds S] http`: a bot process for tests.

The same code path as `python -m bot http` (`bot.cli.main`), with what only tests of several processes need
passed as parameters rather than settings: `--defender-url`, a Defender simulator served over HTTP by the
test (`build_runtime(defender_url=…)`), and `--poll-seconds`, a watch interval below `WATCH_POLL_SECONDS`'s
production minimum of 10 s (`build_slack_bot(poll_seconds=…)`). Everything else comes from the environment,
as in production. Run it with the repository root on `PYTHONPATH`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.cli import main

ROOT = Path(__file__).resolve().parents[2]  # the repository: put it on PYTHONPATH so `tests` can be imported


def command(*args: str, defender_url: str | None = None, poll_seconds: float | None = None) -> list[str]:
    """The command line that starts a bot process: `command("http", defender_url=…, poll_seconds=…)`."""
    options = [] if defender_url is None else ["--defender-url", defender_url]
    options += [] if poll_seconds is None else ["--poll-seconds", str(poll_seconds)]
    return [sys.executable, "-m", __name__, *options, *args]


def run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.doubles.bot_process", add_help=False)
    parser.add_argument("--defender-url")
    parser.add_argument("--poll-seconds", type=float)
    known, rest = parser.parse_known_args(argv)
    return main(rest, defender_url=known.defender_url, poll_seconds=known.poll_seconds)


if __name__ == "__main__":
    sys.exit(run())
