"""Benchmark 3: time from a slash command to its card at the `response_url`, for devices the app has not seen.

Run: `.venv/bin/python -m bench.time_to_card` (defaults: 50 devices by machine id and 50 others by hostname, at a
Defender latency of 50, 150 and 500 ms); `--quick` is the CI smoke size. For each latency each app starts in a
fresh process (as `python -m bot http` would, see `bench.rig`) and gets one command at a time: for each device a
first lookup by machine id, then, once its card is in, a second one with a different filter (a cache hit for ours;
the baseline has no cache, so it calls Defender again); then a first lookup of each of 50 other devices by full
hostname. The time runs from sending the signed request to the stand-in Slack receiving the card, and is also
shown as a multiple of the Defender round trip: the floor is 1 round trip for an id (its alerts) and 2 for a
hostname (its id, then its alerts).

`--api mde|graph|both` (default both) picks the API ours reads alerts from (`DEFENDER_API`), at the same simulated
latency per request; the baseline always calls the Defender for Endpoint API (a hostname: `GET /api/machines/{name}`
first).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.incident_storm import LABELS, RUNS, runs_for
from bench.rig import (
    AppProcess,
    DefenderCalls,
    Planned,
    TimedStandIn,
    Timer,
    device_id,
    device_name,
    machine,
    ms,
    percentile,
    ratio,
    send_commands,
    table,
)

CARD_TIMEOUT = 30.0
LATENCIES = (0.05, 0.15, 0.5)
FLOOR_ROUND_TRIPS = {"id": 1, "name": 2}


@dataclass
class CardTimes:
    app: str
    latency: float
    miss: list[float] = field(default_factory=list)  # first lookup, by machine id
    hit: list[float] = field(default_factory=list)  # the same device again, another filter
    named: list[float] = field(default_factory=list)  # first lookup of other devices, by hostname
    defender: DefenderCalls | None = None


def _one(app: AppProcess, standin: TimedStandIn, text: str, name: str) -> float:
    """Send one command and wait for its card; seconds from sending to the card's arrival."""
    (sent,) = send_commands(app, standin, [Planned(0.0, text, name)])
    if standin.wait_for([name], CARD_TIMEOUT) != 1:
        raise TimeoutError(f"no card for {text!r} from the {app.kind} app within {CARD_TIMEOUT:.0f} s")
    return standin.arrivals[name] - sent.sent_at


def run_cards(kind: str, *, samples: int, latency: float, env: dict[str, str] | None = None) -> CardTimes:
    times = CardTimes(kind, latency)
    standin = TimedStandIn()
    try:
        with AppProcess(kind, standin, latency=latency, devices=2 * samples, env=env) as app:
            for n in range(samples):
                times.miss.append(_one(app, standin, device_id(n), f"miss{n}"))
                time.sleep(0.05)
                times.hit.append(_one(app, standin, f"{device_id(n)} severity:high,medium", f"hit{n}"))
                time.sleep(0.05)
            for n in range(samples, 2 * samples):
                times.named.append(_one(app, standin, device_name(n), f"name{n}"))
                time.sleep(0.05)
            times.defender = app.defender()
    finally:
        standin.close_soon()
    return times


def _with_round_trips(seconds: float, latency: float) -> str:
    return "-" if math.isnan(seconds) else f"{ms(seconds)} (×{seconds / latency:.2f})"


def report(results: dict[str, CardTimes]) -> str:
    """One column per run (times with their multiple of the round trip); ratios are baseline / ours on MDE."""
    names = [name for name in RUNS if name in results]
    latency = next(iter(results.values())).latency
    with_ours = "ours" in results and "baseline" in results
    rows: list[list[object]] = [
        ["first card of the fresh process (by id)", *(_with_round_trips(results[n].miss[0], latency) for n in names),
         f"1 × {ms(latency)}", *([ratio(results["baseline"].miss[0], results["ours"].miss[0])] if with_ours else [])]
    ]  # fmt: skip
    for label, pick, floor in (
        ("first lookup by id", "miss", FLOOR_ROUND_TRIPS["id"]),
        ("first lookup by hostname", "named", FLOOR_ROUND_TRIPS["name"]),
        ("repeat (cache hit for ours)", "hit", 0),
    ):
        for p in (50, 95):
            figures = {name: percentile(getattr(results[name], pick), p) for name in names}
            rows.append(
                [f"{label} p{p}", *(_with_round_trips(figures[name], latency) for name in names),
                 f"{floor} × {ms(latency)}" if floor else "",
                 *([ratio(figures["baseline"], figures["ours"])] if with_ours else [])]
            )  # fmt: skip
    empty = DefenderCalls(0, 0, 0, 0)
    calls = [results[name].defender or empty for name in names]
    for label, counts in (
        ("alert-list calls (MDE: per device; Graph: alerts_v2 pages)", [c.alerts + c.graph_alerts for c in calls]),
        (
            "device calls (MDE: `/api/machines…`, a name by `$filter`; Graph: hunting)",
            [c.details + c.other + c.hunting for c in calls],
        ),
        ("calls, all APIs", [c.total for c in calls]),
    ):
        by = dict(zip(names, counts, strict=True))
        rows.append([label, *counts, "", *([ratio(by["baseline"], by["ours"])] if with_ours else [])])
    headers = ["figure", *(LABELS[name] for name in names), "floor"]
    headers += ["baseline / ours (MDE)"] if with_ours else []
    return table(headers, rows)


def main(argv: Sequence[str] | None = None) -> dict[float, dict[str, CardTimes]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--samples", type=int, default=50, help="devices by id (each looked up twice) and by name")
    parser.add_argument("--latency", type=float, nargs="+", default=list(LATENCIES), help="seconds per request")
    parser.add_argument("--api", choices=("mde", "graph", "both"), default="both", help="DEFENDER_API for ours")
    parser.add_argument("--quick", action="store_true", help="CI smoke size: 3 devices each way, 150 ms")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.latency = 3, [0.15]
    timer = Timer()
    print(f"{machine()}; {args.samples} unseen devices by id, {args.samples} by hostname, one command at a time")
    results: dict[float, dict[str, CardTimes]] = {}
    for latency in args.latency:
        runs = results[latency] = {}
        for name in runs_for(args.api):
            kind, api = RUNS[name]
            runs[name] = run_cards(kind, samples=args.samples, latency=latency, env={"DEFENDER_API": api})
        print(f"\nDefender latency {ms(latency)} per request (the round trip)\n")
        print(report(runs))
    print(f"\n(ran in {timer})")
    return results


if __name__ == "__main__":
    main()
