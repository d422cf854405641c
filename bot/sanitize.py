"""Neutralise untrusted text (alert titles, descriptions, user input) before any renderer shows it.

Control and format characters are removed: ANSI escapes could rewrite a terminal, bidi overrides
(U+202E) and zero-width characters disguise text in any medium. Whitespace is folded to single
spaces and the result is cut to a limit with an ellipsis.
"""

from __future__ import annotations

import unicodedata

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
