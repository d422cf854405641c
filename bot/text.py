"""Text every renderer shares: untrusted text made harmless, and human wording for ages and counts.

Untrusted text (alert titles, descriptions, user input) is neutralised before any renderer shows it.

Control and format characters are removed: ANSI escapes could rewrite a terminal, bidi overrides
(U+202E) and zero-width characters disguise text in any medium. Whitespace is folded to single
spaces and the result is cut to a limit with an ellipsis.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import datetime, timedelta

_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def clean(text: str, limit: int | None = None) -> str:
    """Drop control/format characters, fold whitespace, cut to `limit` characters (ellipsis included)."""
    kept = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if ch.isspace() or unicodedata.category(ch) not in _DROPPED_CATEGORIES
    )
    folded = " ".join(kept.split())
    if limit is not None and len(folded) > limit:
        return folded[: max(0, limit - 1)] + "…"
    return folded


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
