"""The audit trail: one JSON line per lookup, refusal, watch start/stop and button press.

A record holds ids and outcomes only (who, where, which device, what happened, whether Defender was
called) so it can be kept and shipped to a SIEM without leaking alert content or credentials. It is
separate from the application log: operators tune or silence that log; the audit trail stays.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

from bot.access.policy import Requester

log = logging.getLogger(__name__)


class Action(enum.Enum):
    LOOKUP = "lookup"
    HELP = "help"
    WATCH_START = "watch_start"
    WATCH_STOP = "watch_stop"
    WATCH_LIST = "watch_list"
    BUTTON_REFRESH = "button_refresh"
    BUTTON_WATCH = "button_watch"
    BUTTON_UNWATCH = "button_unwatch"
    ALERT_DETAILS = "alert_details"
    TRIAGE_ASSIGN = "triage_assign"
    TRIAGE_STATUS = "triage_status"
    TRIAGE_CLASSIFY = "triage_classify"
    TRIAGE_COMMENT = "triage_comment"
    TRIAGE_INVALID = "triage_invalid"  # a menu choice or form this bot did not write: which change is unknown


class Result(enum.Enum):
    OK = "ok"
    REFUSED = "refused"
    NOT_FOUND = "not_found"
    INVALID = "invalid"  # text or button payload the bot could not accept
    RATE_LIMITED = "rate_limited"
    BUSY = "busy"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What came of a request, as far as the audit trail cares."""

    result: Result
    device: str | None = None  # the machine id when known, else the reference as parsed (never free text)
    from_cache: bool | None = None
    reason: str | None = None  # the refusal rule or problem kind: a fixed word, never user or alert text
    alert: str | None = None  # the alert id, for details and triage
    change: str | None = None  # a write: `status: New -> Resolved` (property names and enum values, never free text)


OK = Outcome(Result.OK)


class AuditLog:
    """Writes records as JSON lines to a text stream; thread-safe. `AuditLog(None)` writes nothing."""

    def __init__(self, stream: IO[str] | None, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._stream = stream
        self._now = now
        self._lock = threading.Lock()

    @classmethod
    def open(cls, target: str) -> AuditLog:
        """`stderr`, `off`, or a file path (appended to, created readable by its owner only)."""
        if target == "off":
            return cls(None)
        if target == "stderr":
            return cls(sys.stderr)
        descriptor = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return cls(os.fdopen(descriptor, "a", encoding="utf-8", buffering=1))

    @property
    def enabled(self) -> bool:
        """False for `AuditLog.open("off")`: records are dropped."""
        return self._stream is not None

    def record(self, action: Action, requester: Requester, outcome: Outcome, *, defender_calls: int = 0) -> None:
        if self._stream is None:
            return
        line = json.dumps(
            {
                "time": self._now().isoformat(timespec="milliseconds"),
                "audit": action.value,
                "team": requester.team_id or None,
                "enterprise": requester.enterprise_id,
                "channel": requester.channel_id or None,
                "user": requester.user_id or None,
                "device": outcome.device,
                "result": outcome.result.value,
                "reason": outcome.reason,
                "from_cache": outcome.from_cache,
                "defender_call": defender_calls > 0,
                "defender_requests": defender_calls,
                **({"alert": outcome.alert} if outcome.alert else {}),
                **({"change": outcome.change} if outcome.change else {}),
            },
            ensure_ascii=True,
        )
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (OSError, ValueError) as exc:  # a full disk must not take the bot down
                log.error("could not write an audit record: %s", exc)

    def close(self) -> None:
        if self._stream is not None and self._stream not in (sys.stderr, sys.stdout):
            self._stream.close()
