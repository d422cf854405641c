"""Human wording shared by every renderer: ages, moments and count lines."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta


def ago(span: timedelta) -> str:
    """`35 s`, `9 min`, `3 h`, `2 d`: short enough for a context line."""
    seconds = max(0, int(span.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def since(moment: datetime | None, now: datetime) -> str:
    return "unknown time" if moment is None else f"{ago(now - moment)} ago"


def counts(pairs: Iterable[tuple[str, int]]) -> str:
    """`High 2 · Medium 3`, or `none`."""
    return " · ".join(f"{label} {count}" for label, count in pairs) or "none"
