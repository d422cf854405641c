"""How many Defender calls the alert service makes in typical and hostile scenarios.

Run: `.venv/bin/python -m bench.service_calls` (no network; a fake clock compresses the hour).
The figures go into docs/benchmarks.md; tests/test_service.py asserts the invariants on the same runs.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from bot.alerts.budget import BudgetExhausted, RateBudget
from bot.alerts.query import parse_query
from bot.alerts.service import AlertService
from bot.defender.auth import StaticTokenProvider
from bot.defender.client import DefenderClient
from bot.defender.simulator import SIMULATOR_BASE_URL, SimulatedTenant, SimulatorTransport
from tests.support import FakeClock, machine_id, run_concurrently


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

    @property
    def busiest_minute(self) -> int:
        return max_in_window(self.alert_calls, 60)


def run_storm(
    per_minute: int = 100, per_hour: int = 1500, *, lookups: int = 1000, devices: int = 300, seed: int = 7
) -> StormReport:
    """An hour of lookups (half of them in a 3-minute incident storm) against a budgeted service."""
    clock = FakeClock()
    defender = CountingDefender(clock)
    budget = RateBudget(per_minute, per_hour, clock=clock)
    client = DefenderClient(
        "https://api.test", StaticTokenProvider("t"), gate=budget, transport=httpx.MockTransport(defender), clock=clock
    )
    service = AlertService(client, ttl=60, max_stale=900, clock=clock, now=clock.wall)
    rng = random.Random(seed)
    fleet = [machine_id(n) for n in range(devices)]
    storm = lookups // 2
    moments = sorted(
        [rng.uniform(600, 780) for _ in range(storm)] + [rng.uniform(0, 3600) for _ in range(lookups - storm)]
    )
    report = StormReport(per_minute, per_hour, lookups, devices)
    start = clock()
    for moment in moments:
        clock.advance(start + moment - clock())
        try:
            result = service.device_alerts(rng.choice(fleet))
        except BudgetExhausted:
            report.outcomes["budget message"] += 1
            continue
        report.outcomes["stale" if result.stale else "cached" if result.from_cache else "fresh"] += 1
    report.alert_calls = defender.alert_calls
    return report


def concurrent_same_device(threads: int = 20, latency: float = 0.3) -> int:
    """`threads` people ask about one device at the same moment; returns alerts calls made."""
    tenant = SimulatedTenant(latency=latency)
    client = DefenderClient(SIMULATOR_BASE_URL, StaticTokenProvider("t"), transport=SimulatorTransport(tenant))
    service = AlertService(client)
    device = tenant.machines[0]["id"]
    run_concurrently(threads, lambda: service.device_alerts(device))
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


def main() -> None:
    started = time.perf_counter()
    print(f"20 concurrent lookups of one device -> {concurrent_same_device()} Defender alerts call(s)")
    lookups, calls = filter_variants()
    print(f"{lookups} filter variants of one device   -> {calls} Defender alerts call(s)")
    print()
    print("One simulated hour: 1,000 lookups over 300 devices, 500 of them in a 3-minute storm (cache TTL 60 s)")
    print(
        f"{'budget':>14} | {'alerts calls':>12} | {'busiest 60 s':>12} | {'fresh':>5} | {'cached':>6} | "
        f"{'stale':>5} | {'budget msg':>10}"
    )
    for per_minute, per_hour in ((100, 1500), (100, 400), (20, 1500)):
        report = run_storm(per_minute, per_hour)
        o = report.outcomes
        print(
            f"{per_minute:>5}/min {per_hour:>4}/h | {len(report.alert_calls):>12} | {report.busiest_minute:>12} | "
            f"{o['fresh']:>5} | {o['cached']:>6} | {o['stale']:>5} | {o['budget message']:>10}"
        )
    print(f"\n(ran in {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
