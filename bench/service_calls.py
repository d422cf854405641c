"""How many Defender calls the alert service makes in typical and hostile scenarios, against the naive baseline.

Run: `.venv/bin/python -m bench.service_calls` (no network; a fake clock compresses the hour); `--quick` is the
CI smoke size. The hour runs drive the bot's own `AlertService`, `DefenderClient` and `RateBudget` (what decides
every Defender call) directly, not through Slack; the baseline's lookup is `bench.baseline.app.lookup_text`, one
call per lookup. Both ask the same Defender double, which enforces Defender's limits (100 calls per minute and
1,500 per hour per API, sliding) by answering 429.
The figures go into docs/benchmarks.md; tests/unit/alerts/test_service.py asserts the invariants on the same runs.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import httpx

from bench.baseline.app import lookup_text
from bench.rig import device_id, ratio, table
from bot.alerts.query import parse_query
from bot.alerts.service import AlertService
from bot.defender.auth import StaticTokenProvider
from bot.defender.client import DefenderClient
from bot.defender.limits import HOUR, Api, BudgetExhausted
from bot.defender.simulator import SIMULATOR_BASE_URL, SimulatedTenant, SimulatorTransport
from bot.demo.clock import FakeClock
from bot.state.budget import RateBudget


class CountingDefender:
    """A Defender double for any number of devices that records when each alerts call arrived."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.alert_calls: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        mid = request.url.path.split("/")[3]
        if request.url.path.endswith("/alerts"):
            with self._lock:
                self.alert_calls.append(self.clock())
            record = {"id": f"da{mid[-6:]}_1", "severity": "High", "status": "New", "machineId": mid}
            return httpx.Response(200, json={"value": [record]})
        return httpx.Response(200, json={"id": mid, "computerDnsName": f"host-{mid[-6:]}"})


class ThrottlingDefender(CountingDefender):
    """The same double, answering 429 where Defender's per-API limits would (a minute and an hour, sliding)."""

    def __init__(self, clock: FakeClock, per_minute: int = 100, per_hour: int = 1500) -> None:
        super().__init__(clock)
        self.limits = ((60.0, per_minute), (3600.0, per_hour))
        self.refused_alert_calls: list[float] = []  # alerts calls answered 429
        self.refused_other = 0
        self._admitted: dict[str, deque[float]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        alerts = request.url.path.endswith("/alerts")
        now = self.clock()
        with self._lock:
            admitted = self._admitted.setdefault("alerts" if alerts else "machine", deque())
            while admitted and admitted[0] <= now - 3600.0:
                admitted.popleft()
            if any(sum(t > now - length for t in admitted) >= limit for length, limit in self.limits):
                if alerts:
                    self.refused_alert_calls.append(now)
                else:
                    self.refused_other += 1
                return httpx.Response(429, headers={"Retry-After": "60"}, json={"error": {"code": "TooManyRequests"}})
            admitted.append(now)
        return super().__call__(request)


def max_in_window(times: list[float], window: float) -> int:
    """The largest number of calls inside any sliding window of `window` seconds."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(ordered):
        while ordered[start] <= moment - window:
            start += 1
        best = max(best, end - start + 1)
    return best


@dataclass
class StormReport:
    per_minute: int
    per_hour: int
    lookups: int
    devices: int
    outcomes: Counter[str] = field(default_factory=Counter)
    alert_calls: list[float] = field(default_factory=list)

    refused_calls: list[float] = field(default_factory=list)  # alerts calls Defender answered with 429
    shown: list[tuple[float, float]] = field(default_factory=list)  # (second of the hour, age of the data shown)
    notices: list[tuple[float, bool]] = field(default_factory=list)  # budget messages: (second, a copy was cached)
    start: float = 0.0  # the fake clock at the start of the hour

    def calls_between(self, low: float, high: float) -> int:
        """Alert-list calls made (answered or refused) from second `low` to `high` of the hour."""
        return sum(low <= moment - self.start < high for moment in self.calls_made)

    @property
    def busiest_minute(self) -> int:
        return max_in_window(self.alert_calls, 60)

    @property
    def calls_made(self) -> list[float]:
        """Every alerts call that reached Defender, answered or refused."""
        return sorted(self.alert_calls + self.refused_calls)


def storm_schedule(
    lookups: int, devices: int, seed: int, *, storm_share: float = 0.5, storm: tuple[float, float] = (600, 780)
) -> list[tuple[float, str]]:
    """(second of the hour, machine id) per lookup: `storm_share` of them inside `storm`, the rest spread out."""
    rng = random.Random(seed)
    fleet = [device_id(n) for n in range(devices)]
    in_storm = int(lookups * storm_share)
    moments = sorted(
        [rng.uniform(*storm) for _ in range(in_storm)] + [rng.uniform(0, 3600) for _ in range(lookups - in_storm)]
    )
    return [(moment, rng.choice(fleet)) for moment in moments]


def run_storm(
    per_minute: int = 100,
    per_hour: int = 1500,
    *,
    lookups: int = 1000,
    devices: int = 300,
    seed: int = 7,
    storm_share: float = 0.5,
    paced: bool = True,
) -> StormReport:
    """An hour of lookups (by default half of them in a 3-minute incident storm) against a budgeted service.

    `paced`: the service stretches its TTL as the hour's budget runs low, as `build_runtime` wires it (False: a
    fixed 60 s TTL, as before pacing).
    """
    clock = FakeClock()
    defender = ThrottlingDefender(clock)
    budget = RateBudget(per_minute, per_hour, clock=clock)
    client = DefenderClient(
        "https://api.test", StaticTokenProvider("t"), gate=budget, transport=httpx.MockTransport(defender), clock=clock
    )
    share_left = partial(budget.hour_share_left, Api.MACHINE_ALERTS) if paced else None
    service = AlertService(client, ttl=60, max_stale=900, clock=clock, now=clock.wall, budget_share_left=share_left)
    report = StormReport(per_minute, per_hour, lookups, devices)
    shown_at: dict[str, float] = {}  # device -> when data about it was last shown (the service keeps it an hour)
    start = report.start = clock()
    for moment, device in storm_schedule(lookups, devices, seed, storm_share=storm_share):
        clock.advance(start + moment - clock())
        try:
            result = service.device_alerts(device)
        except BudgetExhausted:
            report.outcomes["budget message"] += 1
            report.notices.append((moment, moment - shown_at.get(device, -HOUR) < HOUR))
            continue
        shown_at[device] = moment
        report.shown.append((moment, result.age.total_seconds()))
        report.outcomes["stale" if result.stale else "cached" if result.from_cache else "fresh"] += 1
    report.alert_calls = defender.alert_calls
    report.refused_calls = defender.refused_alert_calls
    return report


def run_storm_baseline(
    *, lookups: int = 1000, devices: int = 300, seed: int = 7, storm_share: float = 0.5
) -> StormReport:
    """The same hour of lookups answered by the naive baseline: one Defender call per lookup, whatever happens."""
    clock = FakeClock()
    defender = ThrottlingDefender(clock)
    client = httpx.Client(base_url="https://api.test", transport=httpx.MockTransport(defender))
    report = StormReport(0, 0, lookups, devices)
    start = report.start = clock()
    for moment, device in storm_schedule(lookups, devices, seed, storm_share=storm_share):
        clock.advance(start + moment - clock())
        answer = lookup_text(client, device)
        report.outcomes["Defender error" if answer.startswith("Defender answered") else "fresh"] += 1
    report.alert_calls = defender.alert_calls
    report.refused_calls = defender.refused_alert_calls
    return report


def concurrent_same_device(threads: int = 20, latency: float = 0.3) -> int:
    """`threads` people ask about one device at the same moment; returns alerts calls made."""
    tenant = SimulatedTenant(latency=latency)
    client = DefenderClient(SIMULATOR_BASE_URL, StaticTokenProvider("t"), transport=SimulatorTransport(tenant))
    service = AlertService(client)
    device = tenant.machines[0]["id"]
    with ThreadPoolExecutor(threads) as people:
        for asked in [people.submit(service.device_alerts, device) for _ in range(threads)]:
            asked.result()
    return sum(path.endswith("/alerts") for _, path in tenant.request_log)


def filter_variants() -> tuple[int, int]:
    """Every filter variant of one device in a row; returns (lookups, alerts calls)."""
    tenant = SimulatedTenant()
    client = DefenderClient(SIMULATOR_BASE_URL, StaticTokenProvider("t"), transport=SimulatorTransport(tenant))
    service = AlertService(client)
    texts = ["", "severity:high", "status:new,inprogress", "since:7d", "severity:medium status:resolved since:24h"]
    for text in texts:
        query = parse_query(f"ws-fin-014 {text}")
        service.device_alerts(query.device, query.filters)
    return len(texts), sum(path.split("?")[0].endswith("/alerts") for _, path in tenant.request_log)


# (label, lookups, devices, share of the lookups inside the 3-minute storm at minutes 10-13)
SCENARIOS = (
    ("incident hour: 1,000 lookups over 300 devices, 500 of them in 3 minutes", 1000, 300, 0.5),
    ("all-hour storm: 3,000 lookups over 500 devices, evenly over the hour", 3000, 500, 0.0),
)
QUICK_SCENARIOS = (("incident hour (quick): 200 lookups over 60 devices, 100 in 3 minutes", 200, 60, 0.5),)


def compare(ours: StormReport, base: StormReport) -> str:
    """Ours (at Defender's limits) against the baseline on the same hour of lookups."""
    o, b = ours.outcomes, base.outcomes
    figures = [
        ("alert-list calls made", len(ours.calls_made), len(base.calls_made), True),
        ("busiest 60 s (calls made)", max_in_window(ours.calls_made, 60), max_in_window(base.calls_made, 60), True),
        ("calls Defender refused (429)", len(ours.refused_calls), len(base.refused_calls), True),
        ("answered with fresh data", o["fresh"], b["fresh"], False),
        ("answered from cache (within TTL)", o["cached"], b["cached"], False),
        ("answered with stale data, marked", o["stale"], b["stale"], False),
        ("budget message (ours) / Defender error (baseline)", o["budget message"], b["Defender error"], True),
    ]
    rows = [[name, mine, theirs, ratio(theirs, mine) if compared else ""] for name, mine, theirs, compared in figures]
    return table(["figure", "ours", "baseline", "baseline / ours"], rows)


def hour_profile(paced: StormReport, fixed: StormReport, base: StormReport, step: int = 5) -> str:
    """Per `step` minutes of the hour: alert-list calls made, the oldest data shown, budget messages (how many
    of them to someone whose device had a cached copy), for ours paced, ours with a fixed TTL, and the baseline."""

    def block(report: StormReport, low: float, high: float) -> list[object]:
        calls = report.calls_between(low, high)
        ages = [age for moment, age in report.shown if low <= moment < high]
        notices = [cached for moment, cached in report.notices if low <= moment < high]
        return [calls, f"{max(ages, default=0) / 60:.0f} min", f"{len(notices)} ({sum(notices)})"]

    rows = []
    for minute in range(0, 60, step):
        low, high = minute * 60.0, (minute + step) * 60.0
        minutes = f"{minute:02d}-{minute + step:02d}"
        rows.append([minutes, *block(paced, low, high), *block(fixed, low, high), base.calls_between(low, high)])
    headers = ["minutes", "paced: calls", "oldest shown", "budget msgs (with a copy)", "fixed TTL: calls",
               "oldest shown", "budget msgs (with a copy)", "baseline: calls made"]  # fmt: skip
    return table(headers, rows)


def minutes_with_fresh_data(report: StormReport) -> int:
    """Minutes of the hour in which at least one lookup got data fresh from Defender."""
    return len({int(moment // 60) for moment, age in report.shown if age == 0.0})


def budgets(lookups: int, devices: int, storm_share: float) -> str:
    """Ours under tighter budgets than Defender's, on the same hour."""
    rows = []
    for per_minute, per_hour in ((100, 1500), (100, 400), (20, 1500)):
        report = run_storm(per_minute, per_hour, lookups=lookups, devices=devices, storm_share=storm_share)
        o = report.outcomes
        rows.append(
            [f"{per_minute}/min, {per_hour:,}/h", len(report.alert_calls), report.busiest_minute,
             max_in_window(report.alert_calls, 3600), o["fresh"], o["cached"], o["stale"], o["budget message"]]
        )  # fmt: skip
    headers = ["budget", "alerts calls", "busiest 60 s", "busiest hour", "fresh", "cached", "stale", "budget message"]
    return table(headers, rows)


def main(argv: Sequence[str] | None = None) -> dict[str, tuple[StormReport, StormReport]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke size: one small hour")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"20 concurrent lookups of one device -> {concurrent_same_device()} Defender alerts call(s)")
    lookups, calls = filter_variants()
    print(f"{lookups} filter variants of one device   -> {calls} Defender alerts call(s)")
    results = {}
    for label, lookups, devices, share in QUICK_SCENARIOS if args.quick else SCENARIOS:
        ours = run_storm(lookups=lookups, devices=devices, storm_share=share)
        base = run_storm_baseline(lookups=lookups, devices=devices, storm_share=share)
        results[label] = (ours, base)
        print(f"\nOne simulated hour, {label} (cache TTL 60 s, stale kept 15 min; ours budgets 100/min, 1,500/h)")
        print(compare(ours, base))
        print("\nOurs with other budgets, same hour:")
        print(budgets(lookups, devices, share))
        fixed = run_storm(lookups=lookups, devices=devices, storm_share=share, paced=False)
        print("\nThe same hour by 5 minutes: ours paced (as built), ours with a fixed 60 s TTL, the baseline")
        print(hour_profile(ours, fixed, base))
        print(
            f"minutes with data fresh from Defender: paced {minutes_with_fresh_data(ours)} of 60, "
            f"fixed TTL {minutes_with_fresh_data(fixed)} of 60; budget messages to someone with a cached copy: "
            f"paced {sum(c for _, c in ours.notices)}, fixed TTL {sum(c for _, c in fixed.notices)}"
        )
    print(f"\n(ran in {time.perf_counter() - started:.1f} s)")
    return results


if __name__ == "__main__":
    main()
