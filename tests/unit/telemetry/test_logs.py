"""Application log lines: one per record in text mode, whatever the message holds."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable

from bot.telemetry.logs import make_handler

FORGED = 'U0EVIL\n{"audit": "lookup", "user": "U0ADMIN", "result": "ok"}\r\x1b[2K'


def logged(fmt: str, emit: Callable[[logging.Logger], None]) -> str:
    """What `emit` writes through the bot's handler in `fmt`."""
    stream = io.StringIO()
    logger = logging.getLogger(f"tests.logs.{fmt}")
    logger.addHandler(handler := make_handler(fmt, stream))
    logger.propagate = False
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_logged_value_cannot_start_a_line_of_its_own() -> None:
    output = logged("text", lambda logger: logger.warning("refused user %s", FORGED))
    [line] = output.splitlines()
    assert '\\n{"audit": "lookup"' in line and "\\r\\x1b[2K" in line
    assert "\x1b" not in output


def test_a_traceback_keeps_its_lines() -> None:
    def fail(logger: logging.Logger) -> None:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")

    lines = logged("text", fail).splitlines()
    assert lines[0].endswith("failed") and lines[1] == "Traceback (most recent call last):"


def test_json_lines_escape_by_construction() -> None:
    [line] = logged("json", lambda logger: logger.warning("refused user %s", FORGED)).splitlines()
    assert json.loads(line)["message"] == f"refused user {FORGED}"
