"""The test doubles' own checks: proof that the checkers the suite relies on can fail."""

from __future__ import annotations

import pytest

from bot.slack import mrkdwn
from tests.doubles.cards import DEVICE_URL, NOW, PORTAL, hidden_characters, mrkdwn_problems
from tests.doubles.processes import free_port


def test_checker_flags_injections_and_accepts_bot_tokens() -> None:
    date = mrkdwn.date(NOW)
    link = mrkdwn.link(f"{PORTAL}/alerts/da1", "ok")
    assert mrkdwn_problems(f"{date} · {link} · <{DEVICE_URL}> · a &amp; b &lt;c&gt;") == []
    for bad in [
        "<!channel>",
        "hi <@U123>",
        "<#C1|x>",
        "<!subteam^S1>",
        "<https://evil.example|label>",
        f"<{PORTAL}/alerts/x|a|b>",
        "a & b",
        "a > b",
        "<!date^1^x|y> <!here>",
    ]:
        assert mrkdwn_problems(bad) != [], bad
    assert hidden_characters("a\u202eb\u200bc\x1b") == ["'\\u202e'", "'\\u200b'", "'\\x1b'"]


def test_an_unreachable_test_redis_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.doubles import redis as redis_support

    monkeypatch.setattr(redis_support, "REDIS_URL", f"redis://127.0.0.1:{free_port()}/15")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI needs the Redis backend's tests to run"):
        redis_support.require_redis()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=r"no Redis at redis://127\.0\.0\.1"):
        redis_support.require_redis()
