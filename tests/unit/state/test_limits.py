"""Per-person and per-channel request limits (`RequestLimiter`): a minute of burst, then the rate."""

from __future__ import annotations

from bot.demo.clock import FakeClock
from bot.state.limits import RequestLimiter


def test_a_user_gets_a_minute_of_burst_then_the_rate() -> None:
    clock = FakeClock()
    limiter = RequestLimiter(user_per_minute=20, channel_per_minute=0, clock=clock)
    assert [limiter.admit("T", "C", "U0A") for _ in range(20)] == [None] * 20
    slow = limiter.admit("T", "C", "U0A")
    assert slow is not None
    assert (slow.scope, round(slow.retry_after)) == ("you", 3)
    assert slow.message == "Slow down: You have sent more than 20 requests a minute. Try again in 3 s."
    assert limiter.admit("T", "C", "U0B") is None  # someone else is not held back
    clock.advance(3)
    assert limiter.admit("T", "C", "U0A") is None
    assert limiter.admit("T", "C", "U0A") is not None


def test_the_channel_limit_holds_many_people_together() -> None:
    limiter = RequestLimiter(user_per_minute=100, channel_per_minute=3, clock=FakeClock())
    assert [limiter.admit("T", "C0BUSY", f"U{n}") is None for n in range(4)] == [True, True, True, False]
    assert limiter.admit("T", "C0CALM", "U9") is None


def test_a_refused_request_uses_no_allowance() -> None:
    """Over the channel limit, the person's own allowance is untouched."""
    clock = FakeClock()
    limiter = RequestLimiter(user_per_minute=2, channel_per_minute=1, clock=clock)
    assert limiter.admit("T", "C", "U0A") is None
    assert limiter.admit("T", "C", "U0A") is not None  # the channel is out
    assert limiter.admit("T", "C2", "U0A") is None  # the person still had one left


def test_zero_switches_a_limit_off() -> None:
    limiter = RequestLimiter(user_per_minute=0, channel_per_minute=0, clock=FakeClock())
    assert all(limiter.admit("T", "C", "U") is None for _ in range(1000))


def test_a_request_weighs_its_defender_requests() -> None:
    """`admit` takes one token; `charge` the Defender requests beyond the first: an unknown hostname (two calls)
    uses two, a cached lookup (no call) one, so the share runs out by cost, and the bucket can owe."""
    clock = FakeClock()
    limiter = RequestLimiter(user_per_minute=10, channel_per_minute=0, clock=clock)
    unknown_names = 0
    while limiter.admit("T", "C", "U0A") is None:
        limiter.charge("T", "C", "U0A", 1)  # two calls: one more than admit took
        unknown_names += 1
    assert unknown_names == 5
    cached = [limiter.admit("T", "C", "U0B") for _ in range(10)]
    limiter.charge("T", "C", "U0B", 0)  # no-op
    assert cached == [None] * 10
    limiter.charge("T", "C", "U0C", 30)  # one expensive answer: the person owes 20 tokens
    slow = limiter.admit("T", "C", "U0C")
    assert slow is not None
    assert round(slow.retry_after) == 126  # 21 tokens at 10 a minute
    clock.advance(126)
    assert limiter.admit("T", "C", "U0C") is None


def test_the_channel_pays_for_its_members_defender_requests() -> None:
    limiter = RequestLimiter(user_per_minute=100, channel_per_minute=6, clock=FakeClock())
    for person in ("U1", "U2", "U3"):
        assert limiter.admit("T", "C0IR", person) is None
        limiter.charge("T", "C0IR", person, 1)
    assert limiter.admit("T", "C0IR", "U4") is not None
    assert limiter.admit("T", "C0CALM", "U4") is None
