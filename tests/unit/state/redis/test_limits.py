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
