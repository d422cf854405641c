"""How watch polling scales with the number of watched devices: Defender calls, Slack calls and time per cycle.

Run: `.venv/bin/python -m bench.watch_scaling` (no network: the simulator plays Defender with extra devices
appended, a stub Web API client plays Slack, a fake clock compresses the minutes; the store is a real SQLite
file); `--quick` is the CI smoke size. The naive baseline polls each watched device's alerts once per interval
(one call per device per interval: the "per-device polling" column). The figures go into docs/benchmarks.md;
tests/integration/test_watch_poller.py asserts the invariant on the same run: delta polling makes one Defender call per
interval however many devices are watched.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.rig import add_devices, ratio, table
from bot.alerts.query import parse_query
from bot.alerts.service import AlertService
from bot.defender.auth import StaticTokenProvider
from bot.defender.client import DefenderClient
from bot.defender.limits import Api, Priority
from bot.defender.simulator import AAD_TENANT_ID, SIMULATOR_BASE_URL, SimulatedTenant, SimulatorTransport
from bot.demo.clock import FakeClock
from bot.slack.actions import ButtonSeal
from bot.slack.cards import CardContext
from bot.slack.poster import Poster
from bot.slack.watching import SlackWatches
from bot.state.budget import RateBudget
from bot.state.sqlite import SqliteWatchStore
from bot.watch.poller import Poller

INTERVAL = 60.0
CHANNELS = 20  # watches spread over a few incident channels
# Defender's limits per API, and the share of them background work may use (RateBudget's defaults).
PER_MINUTE, PER_HOUR = 100, 1500
BACKGROUND_MINUTE, BACKGROUND_HOUR = PER_MINUTE // 2, int(PER_HOUR * 0.8)


class StubSlack:
    """Just enough of slack_sdk's WebClient for `Poster`: counts calls, remembers threaded metadata."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._ts = itertools.count(1)
        self._threads: dict[str, list[dict[str, Any]]] = {}

    def chat_postMessage(self, **kwargs: Any) -> dict[str, Any]:  # slack_sdk's name
        self.calls["chat.postMessage"] += 1
        ts = f"1700000000.{next(self._ts):06d}"
        if kwargs.get("thread_ts"):
            self._threads.setdefault(kwargs["thread_ts"], []).append({"ts": ts, "metadata": kwargs.get("metadata")})
        return {"ok": True, "ts": ts}

    def chat_update(self, **kwargs: Any) -> dict[str, Any]:
        self.calls["chat.update"] += 1
        return {"ok": True, "ts": kwargs["ts"]}

    def conversations_join(self, **kwargs: Any) -> dict[str, Any]:
        self.calls["conversations.join"] += 1
        return {"ok": True, "channel": {"id": kwargs["channel"], "is_member": True}}

    def conversations_replies(self, **kwargs: Any) -> dict[str, Any]:
        self.calls["conversations.replies"] += 1
        return {"ok": True, "messages": self._threads.get(kwargs["ts"], [])}


class SetupGate:
    """The rate budget, switched off while the watches are set up (people starting them is not polling)."""

    def __init__(self, budget: RateBudget) -> None:
        self.budget = budget
        self.metered = False

    def acquire(self, api: Api, priority: Priority = Priority.INTERACTIVE) -> None:
        if self.metered:
            self.budget.acquire(api, priority)


@dataclass
class ScalingRun:
    devices: int
    intervals: int
    setup_calls: int = 0
    defender_calls: list[int] = field(default_factory=list)  # every Defender request, any API, per interval
    defender_by_api: Counter[str] = field(default_factory=Counter)
    slack_posts: list[int] = field(default_factory=list)
    slack_updates: list[int] = field(default_factory=list)
    changes: int = 0
    replies: int = 0
    cycle_seconds: list[float] = field(default_factory=list)

    @property
    def per_device_calls(self) -> int:
        """What polling each watched device's alerts once per interval would cost per interval."""
        return self.devices

    @property
    def per_device_min_interval(self) -> float:
        """Seconds between checks that per-device polling would need to stay within the background budget."""
        return max(self.devices / BACKGROUND_MINUTE * 60, self.devices / BACKGROUND_HOUR * 3600)


def _api_of(path: str) -> str:
    route = path.split("?")[0]
    if route == "/api/alerts":
        return "delta /api/alerts"
    return "/api/machines/{id}/alerts" if route.endswith("/alerts") else "/api/machines"


def run_scaling(devices: int, intervals: int = 30, *, updates_per_interval: int = 3, seed: int = 11) -> ScalingRun:
    """Watch `devices` devices, then run `intervals` poll cycles with a few alert changes in each."""
    rng = random.Random(seed)
    clock = FakeClock()
    tenant = SimulatedTenant(now=clock.wall, clock=clock, calls_per_minute=10**9)
    watched = add_devices(tenant, devices)
    budget = RateBudget(PER_MINUTE, PER_HOUR, clock=clock)
    gate = SetupGate(budget)
    client = DefenderClient(
        SIMULATOR_BASE_URL,
        StaticTokenProvider("bench"),
        gate=gate,
        transport=SimulatorTransport(tenant),
        clock=clock,
        sleep=clock.sleep,
    )
    service = AlertService(client, clock=clock, now=clock.wall, maxsize=max(2048, 2 * devices))
    slack = StubSlack()
    run = ScalingRun(devices, intervals)
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteWatchStore(Path(folder) / "watches.db")
        context = CardContext("https://security.microsoft.com", AAD_TENANT_ID, seal=ButtonSeal(bytes(32)))
        watches = SlackWatches(store, service, Poster(slack), lambda: context, now=clock.wall)  # type: ignore[arg-type]
        poller = Poller(store, service, client, watches, interval=INTERVAL, clock=clock, now=clock.wall)
        watches.poller = poller
        for n, machine_id in enumerate(watched):
            watches.start(f"C{n % CHANNELS:08d}", "U0BENCH", parse_query(machine_id), timedelta(hours=8))
        run.setup_calls = len(tenant.request_log)
        tenant.calls_per_minute = PER_MINUTE  # from here on, Defender's real limit and budget apply
        gate.metered = True

        bench_alerts: list[str] = []
        for _ in range(intervals):
            clock.advance(INTERVAL)
            for _ in range(updates_per_interval):
                if bench_alerts and rng.random() < 0.5:
                    alert_id = rng.choice(bench_alerts)
                    tenant.set_alert_status(alert_id, rng.choice(["InProgress", "Resolved"]), assignedTo="soc@x")
                else:
                    added = tenant.add_alert(rng.choice(watched), title="Bench alert", severity="High")
                    bench_alerts.append(str(added["id"]))
            requests_before, slack_before = len(tenant.request_log), Counter(slack.calls)
            started = time.perf_counter()
            report = poller.run_once()
            run.cycle_seconds.append(time.perf_counter() - started)
            assert report.ran, "the bench's poller must hold the lease"
            new_requests = tenant.request_log[requests_before:]
            run.defender_calls.append(len(new_requests))
            run.defender_by_api.update(_api_of(path) for _, path in new_requests)
            run.slack_posts.append(slack.calls["chat.postMessage"] - slack_before["chat.postMessage"])
            run.slack_updates.append(slack.calls["chat.update"] - slack_before["chat.update"])
            run.changes += report.changes
            run.replies += report.posted
        store.close()
    client.close()
    return run


def main(argv: list[str] | None = None) -> list[ScalingRun]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--intervals", type=int, default=30)
    parser.add_argument("--devices", type=int, nargs="*", default=[1, 10, 100, 1000])
    parser.add_argument("--quick", action="store_true", help="CI smoke size: 1 and 10 devices, 3 intervals")
    args = parser.parse_args(argv)
    if args.quick:
        args.intervals, args.devices = 3, [1, 10]
    started = time.perf_counter()
    print(
        f"{args.intervals} poll intervals of {INTERVAL:.0f} s; 3 alert changes per interval on random watched devices"
    )
    print(f"Defender budget {PER_MINUTE}/min, {PER_HOUR}/h per API; background share {BACKGROUND_MINUTE}/min")
    print()
    rows, notes, runs = [], [], []
    for devices in args.devices:
        run = run_scaling(devices, args.intervals)
        runs.append(run)
        low, high = min(run.defender_calls), max(run.defender_calls)
        calls = f"{low}" if low == high else f"{low}-{high}"
        wait = run.per_device_min_interval
        shortest = f"{wait:.0f} s" if wait < 60 else f"{wait / 60:.0f} min"
        cycle = f"{statistics.mean(run.cycle_seconds) * 1000:.0f} / {max(run.cycle_seconds) * 1000:.0f}"
        rows.append(
            [f"{devices:,}", calls, f"{run.per_device_calls:,}", ratio(run.per_device_calls, high), shortest,
             sum(run.defender_calls), sum(run.slack_posts), max(run.slack_updates), cycle]
        )  # fmt: skip
        apis = ", ".join(f"{api} {n}" for api, n in sorted(run.defender_by_api.items()))
        notes.append(
            f"{devices:>5} watched: setup (starting the watches) {run.setup_calls} calls; during polling: {apis}; "
            f"{run.changes} changes in {run.replies} replies"
        )
    headers = [
        "watched devices", "ours: calls per interval", "baseline: calls per interval", "baseline / ours",
        "baseline: shortest interval within the background budget", f"ours: calls in {args.intervals} intervals",
        "Slack posts", "chat.update max", "cycle ms mean / max",
    ]  # fmt: skip
    print(table(headers, rows))
    print()
    print("\n".join(notes))
    print(f"\n(ran in {time.perf_counter() - started:.1f} s)")
    return runs


if __name__ == "__main__":
    main()
