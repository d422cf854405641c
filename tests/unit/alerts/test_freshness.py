"""Pacing: the alert cache's TTL stretched as the hour's call budget runs low, against a real `RateBudget`."""

from __future__ import annotations

from functools import partial

import pytest

from bot.alerts.freshness import RESERVE, Pacing
from bot.defender.limits import HOUR, Api, Priority
from bot.demo.clock import FakeClock
from bot.state.budget import RateBudget


def spend(budget: RateBudget, calls: int) -> None:
    for _ in range(calls):
        budget.acquire(Api.MACHINE_ALERTS)


@pytest.fixture
def budget() -> RateBudget:
    return RateBudget(per_minute=10_000, per_hour=1000, clock=FakeClock())


def test_without_a_budget_the_ttl_holds() -> None:
    pacing = Pacing(60.0)
    assert pacing.fresh_for(Priority.INTERACTIVE) == pacing.longest == 60.0


def test_the_ttl_stretches_as_the_hour_runs_low_up_to_an_hour(budget: RateBudget) -> None:
    pacing = Pacing(60.0, partial(budget.hour_share_left, Api.MACHINE_ALERTS), reserve=RESERVE)
    assert pacing.fresh_for(Priority.INTERACTIVE) == 60.0  # a full budget: the TTL
    seen = []
    for _ in range(19):
        spend(budget, 50)
        seen.append(pacing.fresh_for(Priority.INTERACTIVE))
    assert seen == sorted(seen) and seen[0] > 60.0  # never shorter as the budget shrinks
    assert 4 * 60.0 < seen[9] < 5 * 60.0  # half the budget left: a little over 4 x the TTL (above the reserve)
    assert seen[-1] == HOUR  # 950 of 1,000 spent: only the reserve is left


def test_background_work_stretches_first(budget: RateBudget) -> None:
    pacing = Pacing(60.0, partial(budget.hour_share_left, Api.MACHINE_ALERTS))
    spend(budget, 400)
    assert pacing.fresh_for(Priority.BACKGROUND) > pacing.fresh_for(Priority.INTERACTIVE) > 60.0


def test_the_budget_frees_and_the_ttl_comes_back() -> None:
    clock = FakeClock()
    budget = RateBudget(per_minute=10_000, per_hour=1000, clock=clock)
    pacing = Pacing(60.0, partial(budget.hour_share_left, Api.MACHINE_ALERTS))
    spend(budget, 980)
    assert pacing.fresh_for(Priority.INTERACTIVE) == HOUR
    clock.advance(HOUR + 1)
    assert pacing.fresh_for(Priority.INTERACTIVE) == 60.0
