"""The sliding-window rate budget: limits per API, the interactive reserve, and the waits it reports.

Each behavioural test runs against the in-process `RateBudget` and the Redis one shared by processes
(`RedisRateBudget`, on `REDIS_URL`; see tests/doubles/redis.py), both on the test's manual clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.defender.limits import Api, ApiLimits, Budget, BudgetExhausted, Priority
from bot.demo.clock import FakeClock
from bot.state.budget import RateBudget
from bot.state.redis.budget import RedisRateBudget
from tests.doubles.concurrency import run_concurrently
from tests.doubles.redis import shared_state

MakeBudget = Callable[..., Budget]


@pytest.fixture(params=["in-process", "redis"])
def make_budget(request: pytest.FixtureRequest) -> Iterator[MakeBudget]:
    """Builds a budget with `RateBudget`'s arguments, in the process or in Redis."""
    if request.param == "in-process":
        yield RateBudget
        return
    with shared_state() as state:

        def build(*args: Any, **kwargs: Any) -> Budget:
            return RedisRateBudget(state, *args, **kwargs)

        yield build


def test_minute_window_allows_exactly_the_limit_then_reports_the_wait(make_budget: MakeBudget) -> None:
    clock = FakeClock()
    budget = make_budget(per_minute=5, per_hour=100, clock=clock)
    for _ in range(5):
        budget.acquire(Api.MACHINE_ALERTS)
        clock.advance(1)
    with pytest.raises(BudgetExhausted) as caught:
        budget.acquire(Api.MACHINE_ALERTS)
    # The first call was at t=0 and it is now t=5: a slot frees when that call is 60 s old.
    assert caught.value.retry_after == pytest.approx(55.0)
    assert caught.value.api is Api.MACHINE_ALERTS
    clock.advance(55)
    budget.acquire(Api.MACHINE_ALERTS)


def test_window_slides_rather_than_resetting_on_a_boundary(make_budget: MakeBudget) -> None:
    clock = FakeClock()
    budget = make_budget(per_minute=10, per_hour=1000, clock=clock)
    clock.advance(50)
    for _ in range(10):
        budget.acquire(Api.ALERTS)
    clock.advance(15)  # a fixed per-minute bucket would have reset here and allowed 10 more
    with pytest.raises(BudgetExhausted):
        budget.acquire(Api.ALERTS)


def test_hour_window_is_enforced_independently_of_the_minute(make_budget: MakeBudget) -> None:
    clock = FakeClock()
    budget = make_budget(per_minute=100, per_hour=150, clock=clock)
    made = 0
    for _ in range(60):  # one call every 20 s for 20 minutes, then keep trying
        try:
            budget.acquire(Api.MACHINE)
            made += 1
        except BudgetExhausted:
            pass
        clock.advance(20)
    waits: list[float] = []
    for _ in range(200):
        try:
            budget.acquire(Api.MACHINE)
            made += 1
        except BudgetExhausted as exc:
            waits.append(exc.retry_after)
        clock.advance(1)
    assert waits
    assert min(waits) > 0
    assert made == 150
    assert budget.usage(Api.MACHINE).used_last_hour == 150
    assert budget.usage(Api.MACHINE).hour_left == 0


def test_each_api_has_its_own_counter(make_budget: MakeBudget) -> None:
    # The Graph APIs have limits of their own: set them to the same 2 a minute as the others.
    same = {api: ApiLimits(2, 10) for api in Api}
    budget = make_budget(per_minute=2, per_hour=10, per_api=same, clock=FakeClock())
    for api in Api:
        budget.acquire(api)
        budget.acquire(api)
    for api in Api:
        with pytest.raises(BudgetExhausted):
            budget.acquire(api)
        assert budget.usage(api).used_last_minute == 2


def test_background_stops_at_its_share_and_leaves_the_rest_to_people(make_budget: MakeBudget) -> None:
    clock = FakeClock()
    budget = make_budget(per_minute=100, per_hour=1500, clock=clock)
    background = 0
    for _ in range(100):
        try:
            budget.acquire(Api.ALERTS, Priority.BACKGROUND)
            background += 1
        except BudgetExhausted:
            break
    assert background == 50
    for _ in range(50):
        budget.acquire(Api.ALERTS, Priority.INTERACTIVE)
    with pytest.raises(BudgetExhausted):
        budget.acquire(Api.ALERTS, Priority.INTERACTIVE)


def test_background_cannot_start_once_people_used_its_share(make_budget: MakeBudget) -> None:
    budget = make_budget(per_minute=100, per_hour=1500, clock=FakeClock())
    for _ in range(50):
        budget.acquire(Api.MACHINE_ALERTS, Priority.INTERACTIVE)
    with pytest.raises(BudgetExhausted):
        budget.acquire(Api.MACHINE_ALERTS, Priority.BACKGROUND)


def test_background_stops_at_eighty_percent_of_the_hour(make_budget: MakeBudget) -> None:
    clock = FakeClock()
    budget = make_budget(per_minute=100, per_hour=1500, clock=clock)
    made = 0
    for _ in range(3600 // 2):
        try:
            budget.acquire(Api.ALERTS, Priority.BACKGROUND)
            made += 1
        except BudgetExhausted:
            pass
        clock.advance(2)
    # 50 per minute would allow 1,500 in the hour; the hour cap for background is 1,200.
    assert made == 1200


def test_zero_background_share_means_no_background_calls(make_budget: MakeBudget) -> None:
    budget = make_budget(background_minute_share=0.0, clock=FakeClock())
    with pytest.raises(BudgetExhausted):
        budget.acquire(Api.ALERTS, Priority.BACKGROUND)
    budget.acquire(Api.ALERTS, Priority.INTERACTIVE)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"per_minute": 0}, "at least 1"),
        ({"per_hour": 0}, "at least 1"),
        ({"background_minute_share": 1.5}, "between 0 and 1"),
        ({"background_hour_share": -0.1}, "between 0 and 1"),
    ],
)
def test_invalid_limits_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateBudget(**kwargs)  # type: ignore[arg-type]


def test_concurrent_acquires_never_overshoot(make_budget: MakeBudget) -> None:
    budget = make_budget(per_minute=100, per_hour=1500, clock=FakeClock())

    def grab() -> int:
        granted = 0
        for _ in range(50):
            try:
                budget.acquire(Api.MACHINE_ALERTS)
                granted += 1
            except BudgetExhausted:
                pass
        return granted

    assert sum(n for n in run_concurrently(8, grab) if isinstance(n, int)) == 100


def test_a_redis_clock_stepping_back_keeps_the_minute_window_a_minute_long() -> None:
    """The shared windows run on the Redis server's clock; here the test's clock stands in for it (same script)."""
    clock = FakeClock()
    with shared_state() as state:
        budget = RedisRateBudget(state, per_minute=5, per_hour=100, clock=clock)
        for _ in range(5):
            budget.acquire(Api.MACHINE_ALERTS)
            clock.advance(1)
        clock.now -= 300  # the server's clock steps back five minutes
        with pytest.raises(BudgetExhausted) as caught:
            budget.acquire(Api.MACHINE_ALERTS)  # the window is still full: never over the cap
        assert caught.value.retry_after <= 60  # not 360: the calls moved back with the clock
        clock.advance(caught.value.retry_after)
        budget.acquire(Api.MACHINE_ALERTS)
        assert budget.usage(Api.MACHINE_ALERTS).used_last_minute == 5


def test_the_hour_share_left_shrinks_with_each_call_and_frees_as_the_hour_slides(make_budget: MakeBudget) -> None:
    clock = FakeClock()
    budget = make_budget(per_minute=100, per_hour=200, clock=clock)
    assert budget.hour_share_left(Api.MACHINE_ALERTS) == 1.0
    for _ in range(50):
        budget.acquire(Api.MACHINE_ALERTS)
    assert budget.hour_share_left(Api.MACHINE_ALERTS) == 0.75
    # Background work counts the same calls against its own cap (80 % of the hour: 160): it runs low first.
    assert budget.hour_share_left(Api.MACHINE_ALERTS, Priority.BACKGROUND) == (160 - 50) / 160
    assert budget.hour_share_left(Api.ALERTS) == 1.0  # another API's counter
    clock.advance(3601)
    assert budget.hour_share_left(Api.MACHINE_ALERTS) == 1.0
