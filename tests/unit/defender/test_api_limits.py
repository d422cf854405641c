"""Limits per API: the Defender for Endpoint APIs share the configurable 100/min · 1,500/h; Graph's have their own.

Graph's security alerts_v2 allows 150 calls a minute (our hour cap: 3,000), advanced hunting 45 a minute and 1,500
an hour. Each budget test runs on the in-process `RateBudget` and on the Redis one (`RedisRateBudget`, skipped
without a Redis; see tests/doubles/redis.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.defender.limits import (
    DEFAULT_API_LIMITS,
    Api,
    ApiLimits,
    Budget,
    BudgetCaps,
    BudgetExhausted,
    Priority,
)
from bot.demo.clock import FakeClock
from bot.state.budget import RateBudget
from bot.state.redis.budget import RedisRateBudget
from tests.doubles.redis import shared_state

MakeBudget = Callable[..., Budget]
MDE_APIS = (Api.MACHINE_ALERTS, Api.MACHINE, Api.MACHINES, Api.ALERTS)


@pytest.fixture(params=["in-process", "redis"])
def make_budget(request: pytest.FixtureRequest) -> Iterator[MakeBudget]:
    if request.param == "in-process":
        yield RateBudget
        return
    with shared_state() as state:

        def build(*args: Any, **kwargs: Any) -> Budget:
            return RedisRateBudget(state, *args, **kwargs)

        yield build


def fill(budget: Budget, api: Api, priority: Priority = Priority.INTERACTIVE) -> int:
    """Acquire until refused; how many were granted."""
    granted = 0
    while True:
        try:
            budget.acquire(api, priority)
        except BudgetExhausted:
            return granted
        granted += 1


# BudgetCaps -------------------------------------------------------------------------------------


def test_caps_defaults_per_api() -> None:
    caps = BudgetCaps()
    assert caps.limits(Api.GRAPH_ALERTS) == ApiLimits(150, 3000)
    assert caps.limits(Api.GRAPH_HUNTING) == ApiLimits(45, 1500)
    for api in MDE_APIS:
        assert caps.limits(api) == ApiLimits(100, 1500)
    assert caps.caps(Priority.INTERACTIVE) == (100, 1500)  # the old form: the shared (Defender) limits
    assert caps.caps(Priority.BACKGROUND, Api.GRAPH_ALERTS) == (75, 2400)
    assert caps.caps(Priority.BACKGROUND, Api.GRAPH_HUNTING) == (22, 1200)


def test_the_configured_limits_leave_the_graph_ones_alone() -> None:
    caps = BudgetCaps(20, 300, 0.5, 0.8)  # how the configuration builds it
    assert caps.limits(Api.ALERTS) == ApiLimits(20, 300)
    assert caps.limits(Api.GRAPH_ALERTS) == DEFAULT_API_LIMITS[Api.GRAPH_ALERTS]


def test_limits_can_be_overridden_per_api() -> None:
    caps = BudgetCaps(per_api={Api.GRAPH_HUNTING: ApiLimits(10, 100), Api.MACHINE: ApiLimits(5, 50)})
    assert caps.limits(Api.GRAPH_HUNTING) == ApiLimits(10, 100)
    assert caps.limits(Api.MACHINE) == ApiLimits(5, 50)
    assert caps.limits(Api.GRAPH_ALERTS) == ApiLimits(150, 3000)  # not listed: still its own default
    with pytest.raises(ValueError, match="at least 1"):
        ApiLimits(0, 10)


def test_caps_are_immutable_comparable_and_hashable() -> None:
    given = {Api.GRAPH_ALERTS: ApiLimits(150, 3000), Api.GRAPH_HUNTING: ApiLimits(45, 1500)}
    caps = BudgetCaps(per_api=given)
    given[Api.GRAPH_ALERTS] = ApiLimits(1, 1)
    assert caps == BudgetCaps() and hash(caps) == hash(BudgetCaps())
    with pytest.raises(TypeError):
        caps.per_api[Api.GRAPH_ALERTS] = ApiLimits(1, 1)  # type: ignore[index]


def test_a_process_share_divides_every_api() -> None:
    share = BudgetCaps().divided(3)
    assert share.limits(Api.ALERTS) == ApiLimits(33, 500)
    assert share.limits(Api.GRAPH_ALERTS) == ApiLimits(50, 1000)
    assert share.limits(Api.GRAPH_HUNTING) == ApiLimits(15, 500)
    assert BudgetCaps().divided(1000).limits(Api.GRAPH_HUNTING) == ApiLimits(1, 1)


# The budgets ------------------------------------------------------------------------------------


def test_each_api_gets_its_own_default_limit(make_budget: MakeBudget) -> None:
    budget = make_budget(clock=FakeClock())
    assert fill(budget, Api.GRAPH_HUNTING) == 45
    assert fill(budget, Api.GRAPH_ALERTS) == 150
    assert fill(budget, Api.ALERTS) == 100
    usage = budget.usage(Api.GRAPH_ALERTS)
    assert (usage.minute_limit, usage.hour_limit, usage.minute_left) == (150, 3000, 0)
    assert budget.usage(Api.GRAPH_HUNTING).hour_left == 1500 - 45


def test_configured_limits_hold_for_defender_apis_only(make_budget: MakeBudget) -> None:
    budget = make_budget(per_minute=3, per_hour=10, clock=FakeClock())
    assert fill(budget, Api.MACHINE) == 3
    assert fill(budget, Api.GRAPH_HUNTING) == 45


def test_per_api_overrides_reach_the_budget(make_budget: MakeBudget) -> None:
    clock = FakeClock()
    budget = make_budget(per_api={Api.GRAPH_HUNTING: ApiLimits(4, 6)}, clock=clock)
    assert fill(budget, Api.GRAPH_HUNTING) == 4
    assert fill(budget, Api.GRAPH_HUNTING, Priority.BACKGROUND) == 0  # background: half of 4, already used
    clock.advance(61)
    assert fill(budget, Api.GRAPH_HUNTING) == 2  # the hour cap of 6
    with pytest.raises(BudgetExhausted) as caught:
        budget.acquire(Api.GRAPH_HUNTING)
    assert caught.value.retry_after == pytest.approx(3600 - 61, abs=1)
    assert fill(budget, Api.GRAPH_ALERTS) == 150  # not overridden: its own default
    assert fill(budget, Api.ALERTS) == 100


def test_background_work_gets_its_share_of_each_graph_api(make_budget: MakeBudget) -> None:
    budget = make_budget(clock=FakeClock())
    assert fill(budget, Api.GRAPH_ALERTS, Priority.BACKGROUND) == 75
    assert fill(budget, Api.GRAPH_ALERTS) == 75  # the reserve for people


def test_from_caps_keeps_every_limit() -> None:
    caps = BudgetCaps(7, 70, 0.5, 0.8, {Api.GRAPH_ALERTS: ApiLimits(9, 90)})
    budget = RateBudget.from_caps(caps, clock=FakeClock())
    assert budget.limits == caps
    assert fill(budget, Api.GRAPH_ALERTS) == 9
    assert fill(budget, Api.GRAPH_HUNTING) == 45
    assert fill(budget, Api.MACHINE) == 7


def test_the_redis_budgets_local_fallback_is_a_share_of_each_api() -> None:
    with shared_state() as state:
        budget = RedisRateBudget(state, processes=3, clock=FakeClock())
        assert budget.local.limits.limits(Api.GRAPH_HUNTING) == ApiLimits(15, 500)
        assert budget.local.limits.limits(Api.ALERTS) == ApiLimits(33, 500)
