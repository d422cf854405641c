"""The lookup grammar shared by the CLI and Slack: `<machineId|hostname> [severity:…] [status:…] [since:…]`.

Parsing is strict and total: any text either becomes a validated `DeviceQuery` or a `QueryError` whose
message says exactly what was wrong, so bad input never reaches Defender.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from bot.defender.errors import InvalidDeviceReference
from bot.defender.models import Alert, AlertStatus, Severity
from bot.defender.refs import DeviceRef, parse_device_ref

MAX_QUERY_LENGTH = 500
MAX_SINCE = timedelta(days=180)  # Defender keeps alerts for 180 days

USAGE = "<machineId|hostname> [severity:high,medium] [status:new,inprogress,resolved] [since:7d|24h]"

_SEVERITY_WORDS = {
    "high": Severity.HIGH,
    "medium": Severity.MEDIUM,
    "low": Severity.LOW,
    "informational": Severity.INFORMATIONAL,
    "info": Severity.INFORMATIONAL,
    "unspecified": Severity.UNSPECIFIED,
}
_STATUS_WORDS = {
    "new": AlertStatus.NEW,
    "inprogress": AlertStatus.IN_PROGRESS,
    "in-progress": AlertStatus.IN_PROGRESS,
    "in_progress": AlertStatus.IN_PROGRESS,
    "resolved": AlertStatus.RESOLVED,
}
_W = TypeVar("_W", Severity, AlertStatus)
_SINCE = re.compile(r"([0-9]{1,4})([mhdw])")
_SINCE_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class QueryError(ValueError):
    """The lookup text is malformed; the message is safe to show to the person who typed it."""


@dataclass(frozen=True, slots=True)
class AlertFilters:
    """Which of a device's alerts to show; empty sets mean 'all'."""

    severities: frozenset[Severity] = field(default_factory=frozenset)
    statuses: frozenset[AlertStatus] = field(default_factory=frozenset)
    since: timedelta | None = None
    # The unit the person typed (`h` for `since:24h`), so the filter is said back as written; not part of equality.
    since_unit: str | None = field(default=None, compare=False)

    @property
    def is_empty(self) -> bool:
        return not self.severities and not self.statuses and self.since is None

    def matches(self, alert: Alert, now: datetime) -> bool:
        if self.severities and alert.severity not in self.severities:
            return False
        if self.statuses and alert.status not in self.statuses:
            return False
        if self.since is not None:
            activity = alert.last_activity
            return activity is not None and activity >= now - self.since
        return True

    def as_query(self) -> str:
        """The filters in the grammar `parse_query` reads back, e.g. `severity:high,medium since:7d`."""
        parts = []
        if self.severities:
            words = {v: k for k, v in _SEVERITY_WORDS.items() if k != "info"}
            parts.append("severity:" + ",".join(words[s] for s in sorted(self.severities, key=lambda s: -s.rank)))
        if self.statuses:
            words_s = {AlertStatus.NEW: "new", AlertStatus.IN_PROGRESS: "inprogress", AlertStatus.RESOLVED: "resolved"}
            parts.append("status:" + ",".join(words_s[s] for s in AlertStatus if s in self.statuses))
        if self.since is not None:
            parts.append(f"since:{format_duration(self.since, self.since_unit)}")
        return " ".join(parts)

    def describe(self) -> str:
        """A short human summary, e.g. `severity: High, Medium · since: 7d`."""
        parts = []
        if self.severities:
            ordered = sorted(self.severities, key=lambda s: -s.rank)
            parts.append("severity: " + ", ".join(s.label for s in ordered))
        if self.statuses:
            parts.append("status: " + ", ".join(s.label for s in sorted(self.statuses, key=list(AlertStatus).index)))
        if self.since is not None:
            parts.append(f"since: {format_duration(self.since, self.since_unit)}")
        return " · ".join(parts)


@dataclass(frozen=True, slots=True)
class DeviceQuery:
    device: DeviceRef
    filters: AlertFilters


_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60}


def format_duration(span: timedelta, unit: str | None = None) -> str:
    """`span` in the grammar's notation: in `unit` when it is whole in it (`24h` stays `24h`), else in the
    largest whole unit up to days: `7d`, `36h`, `90m`."""
    seconds = int(span.total_seconds())
    size = _UNIT_SECONDS.get(unit or "")
    if size and seconds >= size and seconds % size == 0:
        return f"{seconds // size}{unit}"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _words(value: str, vocabulary: dict[str, _W], key: str) -> frozenset[_W]:
    chosen: set[_W] = set()
    for word in value.split(","):
        word = word.strip().lower()
        if not word:
            raise QueryError(f"'{key}:' has an empty value")
        if word not in vocabulary:
            known = ", ".join(sorted({w for w in vocabulary if "-" not in w and "_" not in w}))
            raise QueryError(f"unknown {key} '{_clip(word)}' (use {known})")
        chosen.add(vocabulary[word])
    return frozenset(chosen)


def parse_since(value: str) -> timedelta:
    match = _SINCE.fullmatch(value.strip().lower())
    if match is None:
        raise QueryError(f"'since:{_clip(value)}' is not a duration like 30m, 24h, 7d or 2w")
    span = timedelta(**{_SINCE_UNITS[match[2]]: int(match[1])})
    if span <= timedelta(0):
        raise QueryError("'since:' must be longer than zero")
    if span > MAX_SINCE:
        raise QueryError("'since:' can reach back at most 180d (Defender's retention)")
    return span


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_query(text: str) -> DeviceQuery:
    """Parse a lookup such as `ws-fin-014 severity:high,medium since:7d`."""
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(f"the request is longer than {MAX_QUERY_LENGTH} characters")
    device: str | None = None
    options: dict[str, str] = {}
    for token in text.split():
        key, colon, value = token.partition(":")
        if not colon:
            if device is not None:
                raise QueryError(f"one device per lookup: got '{_clip(device)}' and '{_clip(token)}'")
            device = token
            continue
        key = key.lower()
        if key not in ("severity", "status", "since"):
            raise QueryError(f"unknown filter '{_clip(key)}:' (use severity:, status: or since:)")
        if key in options:
            raise QueryError(f"'{key}:' is given twice")
        options[key] = value
    if device is None:
        raise QueryError("name a device: a machine id or a hostname")
    try:
        ref = parse_device_ref(device)
    except InvalidDeviceReference as exc:
        raise QueryError(f"'{_clip(device)}': {exc}") from None
    filters = AlertFilters(
        severities=_words(options["severity"], _SEVERITY_WORDS, "severity") if "severity" in options else frozenset(),
        statuses=_words(options["status"], _STATUS_WORDS, "status") if "status" in options else frozenset(),
        since=parse_since(options["since"]) if "since" in options else None,
        since_unit=options["since"].strip().lower()[-1:] if "since" in options else None,
    )
    return DeviceQuery(ref, filters)
