"""Application log lines: one per record in text mode, whatever the message holds."""

from __future__ import annotations

import io
import json
import logging

from bot.telemetry.logs import make_handler

FORGED = 'U0EVIL\n{"audit": "lookup", "user": "U0ADMIN", "result": "ok"}\r\x1b[2K'


def test_a_logged_value_cannot_start_a_line_of_its_own() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.logs.text")
    logger.addHandler(handler := make_handler("text", stream))
    logger.propagate = False
    try:
        logger.warning("refused user %s", FORGED)
    finally:
        logger.removeHandler(handler)
    [line] = stream.getvalue().splitlines()
    assert '\\n{"audit": "lookup"' in line and "\\r\\x1b[2K" in line
    assert "\x1b" not in stream.getvalue()


def test_a_traceback_keeps_its_lines() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.logs.traceback")
    logger.addHandler(handler := make_handler("text", stream))
    logger.propagate = False
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("failed") and lines[1] == "Traceback (most recent call last):"


def test_json_lines_escape_by_construction() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.logs.json")
    logger.addHandler(handler := make_handler("json", stream))
    logger.propagate = False
    try:
        logger.warning("refused user %s", FORGED)
    finally:
        logger.removeHandler(handler)
    [line] = stream.getvalue().splitlines()
    assert json.loads(line)["message"] == f"refused user {FORGED}"
