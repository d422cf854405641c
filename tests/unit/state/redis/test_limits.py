"""Per-person and per-channel limits shared by every process (`RedisRequestLimiter`)."""

from __future__ import annotations

from bot.state.redis.connection import RedisConnection
from bot.state.redis.limits import RedisRequestLimiter
from tests.doubles.redis import shared_state, url_with_prefix

# -- per-person limits ---------------------------------------------------------------------------------------------


def test_a_persons_allowance_is_shared_by_every_process() -> None:
    with shared_state() as state:
        other = RedisConnection(url_with_prefix(state.prefix))
        try:
            limiters = [RedisRequestLimiter(s, user_per_minute=5, channel_per_minute=8) for s in (state, other, state)]
            outcomes = [limiters[n % 3].admit("T1", "C1", "U1") for n in range(7)]
            assert outcomes[:5] == [None] * 5  # a minute's worth at once, wherever the requests land
            refused = outcomes[5]
            assert refused is not None
            assert (refused.scope, refused.per_minute) == ("you", 5)
            assert 11 < refused.retry_after <= 12  # one token refills in 60 / 5 s
            for person in ("U2", "U3", "U4"):  # other people in the same channel: 6, 7 and 8 of 8
                assert limiters[1].admit("T1", "C1", person) is None
            slowed = limiters[2].admit("T1", "C1", "U5")
            assert slowed is not None
            assert slowed.scope == "this channel"
            assert RedisRequestLimiter(state, user_per_minute=0, channel_per_minute=0).admit("T1", "C1", "U1") is None
        finally:
            other.close()


def test_defender_requests_beyond_the_first_are_charged_in_every_process() -> None:
    with shared_state() as state:
        other = RedisConnection(url_with_prefix(state.prefix))
        try:
            limiters = [RedisRequestLimiter(s, user_per_minute=10, channel_per_minute=100) for s in (state, other)]
            unknown_names = 0
            while limiters[unknown_names % 2].admit("T1", "C1", "U1") is None:
                limiters[(unknown_names + 1) % 2].charge("T1", "C1", "U1", 1)  # an unknown hostname: two calls
                unknown_names += 1
            assert unknown_names == 5
            limiters[0].charge("T1", "C2", "U2", 0)  # nothing beyond the first: no-op
            assert [limiters[1].admit("T1", "C2", "U2") for _ in range(10)] == [None] * 10  # cached lookups: 1 each
            limiters[1].charge("T1", "C3", "U3", 30)
            owing = limiters[0].admit("T1", "C3", "U3")
            assert owing is not None
            assert 125 < owing.retry_after <= 126  # 21 tokens short at 10 a minute
            limiters[0].charge("T1", "C4", "U4", 10)  # the channel (100 a minute) keeps its own count
            assert limiters[0].admit("T1", "C4", "U5") is None
        finally:
            other.close()
