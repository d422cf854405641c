"""Benchmark 3: time from a slash command to its card at the `response_url`, cache miss and cache hit.

Run: `.venv/bin/python -m bench.time_to_card` (30 devices, Defender latency 300 ms); `--quick` is the CI smoke
size. One command at a time over HTTP (see `bench.rig`): for each device a first lookup (a cache miss for ours)
and, once its card is in, a second one with a different filter (a cache hit for ours; the baseline has no cache,
so both of its lookups call Defender). The time runs from sending the signed request to the stand-in Slack
receiving the card.

`--api mde|graph|both` (default both) picks the API ours reads alerts from (`DEFENDER_API`), at the same simulated
latency per request; the baseline always calls the Defender for Endpoint API.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.incident_storm import LABELS, RUNS, runs_for
from bench.rig import (
    DEFAULT_LATENCY,
    AppProcess,
    DefenderCalls,
    Planned,
    TimedStandIn,
    Timer,
    device_id,
    machine,
    ms,
    percentile,
    ratio,
    send_commands,
    table,
)

CARD_TIMEOUT = 30.0


@dataclass
class CardTimes:
    app: str
    miss: list[float] = field(default_factory=list)
    hit: list[float] = field(default_factory=list)
    defender: DefenderCalls | None = None


def _one(app: AppProcess, standin: TimedStandIn, text: str, name: str) -> float:
    """Send one command and wait for its card; seconds from sending to the card's arrival."""
    (sent,) = send_commands(app, standin, [Planned(0.0, text, name)])
    if standin.wait_for([name], CARD_TIMEOUT) != 1:
        raise TimeoutError(f"no card for {text!r} from the {app.kind} app within {CARD_TIMEOUT:.0f} s")
    return standin.arrivals[name] - sent.sent_at


def run_cards(
    kind: str, *, samples: int = 30, latency: float = DEFAULT_LATENCY, env: dict[str, str] | None = None
) -> CardTimes:
    times = CardTimes(kind)
    standin = TimedStandIn()
    try:
        with AppProcess(kind, standin, latency=latency, devices=samples, env=env) as app:
            for n in range(samples):
                times.miss.append(_one(app, standin, device_id(n), f"miss{n}"))
                time.sleep(0.05)
                times.hit.append(_one(app, standin, f"{device_id(n)} severity:high,medium", f"hit{n}"))
                time.sleep(0.05)
            times.defender = app.defender()
    finally:
        standin.close_soon()
    return times


def report(results: dict[str, CardTimes]) -> str:
    """One column per run; the ratios compare ours on the MDE API with the baseline, and Graph with MDE."""
    names = [name for name in RUNS if name in results]
    runs = [results[name] for name in names]
    with_ours, with_both = "ours" in results, "ours" in results and "graph" in results

    def ratios(by: dict[str, float]) -> list[object]:
        return [*([ratio(by["baseline"], by["ours"])] if with_ours else []),
                *([ratio(by["graph"], by["ours"])] if with_both else [])]  # fmt: skip

    rows: list[list[object]] = []
    for label, pick in (("cache miss", "miss"), ("cache hit", "hit")):
        for p in (50, 95):
            figures = {name: percentile(getattr(results[name], pick), p) for name in names}
            rows.append([f"{label} p{p}", *(ms(figures[name]) for name in names), *ratios(figures)])
    empty = DefenderCalls(0, 0, 0, 0)
    calls = [r.defender or empty for r in runs]
    for label, counts in (
        ("alert-list calls (MDE: per device; Graph: alerts_v2 pages)", [c.alerts + c.graph_alerts for c in calls]),
        ("device calls (MDE: `/api/machines/{id}`; Graph: hunting)", [c.details + c.hunting for c in calls]),
        ("calls, all APIs", [c.total for c in calls]),
    ):
        rows.append([label, *counts, *ratios({name: float(n) for name, n in zip(names, counts, strict=True)})])
    headers = ["figure", *(LABELS[name] for name in names)]
    headers += ["baseline / ours (MDE)"] if with_ours else []
    headers += ["Graph / MDE (ours)"] if with_both else []
    return table(headers, rows)


def main(argv: Sequence[str] | None = None) -> dict[str, CardTimes]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--samples", type=int, default=30, help="devices, each looked up twice")
    parser.add_argument("--latency", type=float, default=DEFAULT_LATENCY, help="seconds per Defender request")
    parser.add_argument("--api", choices=("mde", "graph", "both"), default="both", help="DEFENDER_API for ours")
    parser.add_argument("--quick", action="store_true", help="CI smoke size: 3 devices")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples = 3
    timer = Timer()
    print(f"{machine()}; Defender latency {args.latency * 1000:.0f} ms")
    print(f"{args.samples} devices, each looked up twice, one command at a time\n")
    results = {}
    for name in runs_for(args.api):
        kind, api = RUNS[name]
        results[name] = run_cards(kind, samples=args.samples, latency=args.latency, env={"DEFENDER_API": api})
    print(report(results))
    print(f"\n(ran in {timer})")
    return results


if __name__ == "__main__":
    main()
