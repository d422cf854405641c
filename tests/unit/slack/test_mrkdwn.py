"""mrkdwn helpers: escaping, cutting, links whose label cannot end early, and date tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot.slack import mrkdwn
from tests.doubles.cards import DEVICE_URL, mrkdwn_problems


def test_escape_only_the_three_control_characters() -> None:
    assert mrkdwn.escape("a & b < c > d") == "a &amp; b &lt; c &gt; d"
    assert mrkdwn.escape("&amp; &lt;") == "&amp;amp; &amp;lt;"
    untouched = "\"quotes\" 'apostrophe' é © ™ | * _ ~ ` :emoji: #60; nbsp;"
    assert mrkdwn.escape(untouched) == untouched


def test_text_cleans_cuts_then_escapes() -> None:
    assert mrkdwn.text("  <b>\n\tbold\u202e </b> ") == "&lt;b&gt; bold &lt;/b&gt;"
    assert mrkdwn.text("<!channel>", 4) == "&lt;!c…"
    assert mrkdwn.text("abc", 3) == "abc"
    assert mrkdwn.text("\x1b[31mred") == "[31mred"


def test_plain_cleans_but_does_not_escape() -> None:
    assert mrkdwn.plain("<!here> & \u200bhi\n", 100) == "<!here> & hi"
    assert mrkdwn.plain("x" * 10, 5) == "xxxx…"


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Suspicious | thing", "Suspicious ¦ thing"),
        ("a>b|c", "a&gt;b¦c"),
        ("<!channel>", "&lt;!channel&gt;"),
        ("x|https://evil.example>", "x¦https://evil.example&gt;"),
    ],
)
def test_link_label_cannot_end_early(label: str, expected: str) -> None:
    link = mrkdwn.link("https://security.microsoft.com/alerts/da1", label)
    assert link == f"<https://security.microsoft.com/alerts/da1|{expected}>"
    assert link.count("|") == 1
    assert link.count(">") == 1
    assert mrkdwn_problems(link) == []


def test_link_with_empty_label_is_bare() -> None:
    assert mrkdwn.link(DEVICE_URL, "") == f"<{DEVICE_URL}>"
    assert mrkdwn.link(DEVICE_URL, "\u200b \n") == f"<{DEVICE_URL}>"
    assert mrkdwn.link(DEVICE_URL, "abcdef", 4) == f"<{DEVICE_URL}|abc…>"


def test_date_token() -> None:
    moment = datetime(2026, 11, 27, 10, 30, 59, tzinfo=UTC)
    assert mrkdwn.date(moment) == "<!date^1795775459^{date_short_pretty} {time}|2026-11-27 10:30 UTC>"
    assert mrkdwn.date(moment, "{date_long}") == "<!date^1795775459^{date_long}|2026-11-27 10:30 UTC>"
    assert mrkdwn.date(datetime(1970, 1, 1, tzinfo=UTC), "{time}") == "<!date^0^{time}|1970-01-01 00:00 UTC>"


def test_date_fallback_is_utc_for_other_timezones() -> None:
    moment = datetime(2026, 11, 27, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert mrkdwn.date(moment, "{time}") == "<!date^1795773600^{time}|2026-11-27 10:00 UTC>"
