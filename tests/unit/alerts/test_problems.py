"""How long to wait, in words a person reads: seconds for short waits, minutes for Defender's hourly 429."""

from __future__ import annotations

import pytest

from bot.alerts.problems import explain
from bot.defender.errors import Throttled
from bot.defender.limits import Api, BudgetExhausted


@pytest.mark.parametrize(
    ("wait", "hint"),
    [
        (30.0, "Try again in 30 s."),
        (90.0, "Try again in 90 s."),
        (90.4, "Try again in 2 min."),  # rounded up: never sooner than the wait
        (2100.0, "Try again in 35 min."),  # the hourly limit's Retry-After (was "Try again in 2100 s.")
        (2101.0, "Try again in 36 min."),
    ],
)
def test_a_wait_over_90_seconds_is_said_in_minutes(wait: float, hint: str) -> None:
    assert explain(Throttled(wait)).hint == hint
    assert explain(BudgetExhausted(Api.MACHINE, wait)).hint == hint
