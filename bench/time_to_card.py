"""Benchmark 3: time from a slash command to its card at the `response_url`, cache miss and cache hit.

Run: `.venv/bin/python -m bench.time_to_card` (30 devices, Defender latency 300 ms); `--quick` is the CI smoke
size. One command at a time over HTTP (see `bench.rig`): for each device a first lookup (a cache miss for ours)
and, once its card is in, a second one with a different filter (a cache hit for ours; the baseline has no cache,
so both of its lookups call Defender). The time runs from sending the signed request to the stand-in Slack
receiving the card.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.rig import (
    APPS,
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


def run_cards(kind: str, *, samples: int = 30, latency: float = DEFAULT_LATENCY) -> CardTimes:
    times = CardTimes(kind)
    standin = TimedStandIn()
    try:
        with AppProcess(kind, standin, latency=latency, devices=samples) as app:
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
    ours, base = results["ours"], results["baseline"]
    rows: list[list[object]] = []
    for label, pick in (("cache miss", "miss"), ("cache hit", "hit")):
        for p in (50, 95):
            o, b = (percentile(getattr(r, pick), p) for r in (ours, base))
            rows.append([f"{label} p{p}", ms(o), ms(b), ratio(b, o)])
    calls = [r.defender.alerts if r.defender else 0 for r in (ours, base)]
    totals = [r.defender.total if r.defender else 0 for r in (ours, base)]
    rows.append(["Defender alert-list calls", *calls, ratio(calls[1], calls[0])])
    rows.append(["Defender calls, all APIs", *totals, ratio(totals[1], totals[0])])
    return table(["figure", "ours", "baseline", "baseline / ours"], rows)


def main(argv: Sequence[str] | None = None) -> dict[str, CardTimes]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--samples", type=int, default=30, help="devices, each looked up twice")
    parser.add_argument("--latency", type=float, default=DEFAULT_LATENCY, help="seconds per Defender request")
    parser.add_argument("--quick", action="store_true", help="CI smoke size: 3 devices")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples = 3
    timer = Timer()
    print(f"{machine()}; Defender latency {args.latency * 1000:.0f} ms")
    print(f"{args.samples} devices, each looked up twice, one command at a time\n")
    results = {kind: run_cards(kind, samples=args.samples, latency=args.latency) for kind in APPS}
    print(report(results))
    print(f"\n(ran in {timer})")
    return results


if __name__ == "__main__":
    main()
