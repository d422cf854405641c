"""Application logging: text or JSON lines, each record tagged with the request's correlation id.

A correlation id is set when a Slack request arrives (a Bolt middleware) and follows the request onto
the work pool (jobs run in a copy of the submitting context). The same id is shown to the person in
error messages ("reference 3f9c2a1b7d4e"), so support can find every log line of that request.
"""

from __future__ import annotations

import contextvars
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import IO

_CORRELATION: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s]: %(message)s"


def correlation_id() -> str | None:
    """The id of the request this code runs for, if any."""
    return _CORRELATION.get()


def begin_request() -> str:
    """A new id for the request this thread starts handling (each Slack request sets its own)."""
    value = uuid.uuid4().hex[:12]
    _CORRELATION.set(value)
    return value


class _Correlation(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = _CORRELATION.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation id, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", None),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


def configure(level: str, fmt: str, stream: IO[str]) -> None:
    """Log to `stream` in `fmt` ('text' or 'json') at `level`.

    Like `logging.basicConfig`, it leaves a root logger that already has handlers alone (an embedding
    application or a test runner owns logging then).
    """
    root = logging.getLogger()
    if root.handlers:
        return
    root.addHandler(make_handler(fmt, stream))
    root.setLevel(level)


def _escaped(text: str) -> str:
    """Control characters as escapes: a logged value cannot start a new line or rewrite the terminal."""
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


class TextFormatter(logging.Formatter):
    """The text format, one line per record whatever the message holds: a value that carries a newline (a
    Slack or Defender string) cannot forge a second line, such as one that looks like an audit record.
    Tracebacks, which the bot's own code writes, keep their lines."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = record.message
        record.message = _escaped(message)
        try:
            return super().formatMessage(record)
        finally:
            record.message = message


def make_handler(fmt: str, stream: IO[str]) -> logging.Handler:
    """A handler writing `fmt` ('text' or 'json') lines with the correlation id to `stream`."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(_Correlation())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    return handler
