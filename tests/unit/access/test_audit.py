"""The audit log: one JSON line per request, with ids and the outcome only, to stderr, a file or nowhere."""

from __future__ import annotations

import io
import json
from pathlib import Path

from bot.access.audit import Action, AuditLog, Outcome, Result
from bot.access.policy import Requester

ALICE = Requester("T0HOME", "C0INCIDENT", "U0ALICE")


def test_audit_lines_are_json_with_ids_and_outcome() -> None:
    stream = io.StringIO()
    log = AuditLog(stream)
    log.record(Action.LOOKUP, ALICE, Outcome(Result.OK, "a" * 40, from_cache=True))
    log.record(Action.BUTTON_WATCH, ALICE, Outcome(Result.REFUSED, reason="channel"), defender_calls=0)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["audit"], first["device"], first["result"], first["from_cache"]) == ("lookup", "a" * 40, "ok", True)
    assert (first["team"], first["channel"], first["user"]) == ("T0HOME", "C0INCIDENT", "U0ALICE")
    assert (second["audit"], second["result"], second["reason"], second["defender_call"]) == (
        "button_watch",
        "refused",
        "channel",
        False,
    )


def test_audit_targets(tmp_path: Path) -> None:
    assert not AuditLog.open("off").enabled
    path = tmp_path / "audit.jsonl"
    log = AuditLog.open(str(path))
    log.record(Action.HELP, ALICE, Outcome(Result.OK))
    log.close()
    assert json.loads(path.read_text())["audit"] == "help"
    assert path.stat().st_mode & 0o777 == 0o600
