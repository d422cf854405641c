"""The composition root's own decisions (the wiring itself is exercised by every integration test)."""

from __future__ import annotations

from datetime import date

import pytest

from bot.config import DataApi
from bot.runtime import health_problems, retirement_warning


@pytest.mark.parametrize(
    ("api", "today", "says"),
    [
        (DataApi.MDE, date(2026, 12, 31), None),
        (DataApi.MDE, date(2027, 1, 1), "stops working on 01 Feb 2027"),
        (DataApi.MDE, date(2027, 2, 2), "stopped working on 01 Feb 2027"),
        (DataApi.GRAPH, date(2027, 2, 2), None),
    ],
)
def test_the_retirement_warning_starts_a_month_ahead_and_only_on_mde(
    api: DataApi, today: date, says: str | None
) -> None:
    warning = retirement_warning(api, today)
    if says is None:
        assert warning is None
    else:
        assert warning is not None and says in warning and "DEFENDER_API=graph" in warning


@pytest.mark.parametrize(
    ("shared_state", "failing", "problems"),
    [
        ("local", None, []),
        ("redis", None, []),
        ("redis-unavailable", None, ["shared-state-unavailable"]),
        ("local", "OperationalError", ["watch-store-failing"]),
        ("redis-unavailable", "RedisUnavailable", ["shared-state-unavailable", "watch-store-failing"]),
    ],
)
def test_health_names_each_dependency_that_is_down(shared_state: str, failing: str | None, problems: list[str]) -> None:
    assert health_problems(shared_state, failing) == problems
