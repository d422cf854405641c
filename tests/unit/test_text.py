"""`bot.text`: cleaning text of control and format characters, and cutting it."""

from __future__ import annotations

from bot.text import clean


def test_clean_removes_control_and_format_characters() -> None:
    assert clean("a\x1b[31mb\x07c\u202ed\u200be\ufefff\u2066g") == "a[31mbcdefg"
    assert clean("  many\n\n  spaces\t\there ") == "many spaces here"
    assert clean("abcdef", 4) == "abc…"
    assert clean("abcdef", 1) == "…"
    assert clean("abcdef", 0) == "…"
    assert clean("abc", 3) == "abc"
