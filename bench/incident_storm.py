"""Benchmark 2: Defender calls during an incident storm, ours against the naive baseline and the floor.

Run: `.venv/bin/python -m bench.incident_storm` (20 people × 5 devices, each person asks once about each device
with one of six filter mixes, at random moments over 60 s; Defender latency 300 ms); `--quick` is the CI smoke
size. Real time, over HTTP (see `bench.rig`). The floor is what any cache with the bot's TTL must spend: for
each device, the number of TTL-long windows needed to cover the moments it was asked about.
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from bench.rig import (
    APPS,
    DEFAULT_LATENCY,
    AppProcess,
    DefenderCalls,
    Planned,
    TimedStandIn,
    Timer,
    add_load_options,
    bot_env,
    device_id,
    machine,
    ms,
    percentile,
    ratio,
    send_commands,
    table,
)

FILTERS = ("", "severity:high", "severity:high,medium", "status:new,inprogress", "since:7d", "severity:high since:24h")
TTL = 60.0  # the bot's default ALERT_CACHE_TTL_SECONDS


@dataclass(frozen=True, slots=True)
class StormResult:
    app: str
    commands: int
    card_seconds: list[float]
    errors: int
    defender: DefenderCalls


def storm_plan(people: int, devices: int, seconds: float, seed: int = 5) -> list[Planned]:
    """Every person asks about every device once, with a random filter mix, at a random moment."""
    rng = random.Random(seed)
    plan = []
    for person in range(people):
        for n in range(devices):
            text = f"{device_id(n)} {rng.choice(FILTERS)}".strip()
            user = f"U0BENCH{person:03d}"
            plan.append(Planned(at=rng.uniform(0, seconds), text=text, name=f"p{person}d{n}", user=user))
    return sorted(plan, key=lambda p: p.at)


def floor_calls(plan: Sequence[Planned], ttl: float = TTL) -> int:
    """Fewest alert-list calls a TTL cache can answer `plan` with: TTL windows per device, greedily."""
    moments: defaultdict[str, list[float]] = defaultdict(list)
    for planned in plan:
        moments[planned.text.split()[0]].append(planned.at)
    calls = 0
    for times in moments.values():
        covered_until = -1.0
        for moment in sorted(times):
            if moment >= covered_until:
                calls += 1
                covered_until = moment + ttl
    return calls


def run_storm(
    kind: str, plan: Sequence[Planned], *, latency: float = DEFAULT_LATENCY, env: dict[str, str] | None = None
) -> StormResult:
    devices = len({p.text.split()[0] for p in plan})
    standin = TimedStandIn()
    try:
        with AppProcess(kind, standin, latency=latency, devices=devices, env=env) as app:
            sent = send_commands(app, standin, plan)
            standin.wait_for([p.name for p in plan], timeout=30 + len(plan) * latency)
            cards, errors = standin.card_seconds(sent)
            return StormResult(kind, len(plan), cards, errors, app.defender())
    finally:
        standin.close_soon()


def report(results: dict[str, StormResult], floor: int) -> str:
    ours, base = results["ours"], results["baseline"]
    rows: list[list[object]] = [
        ["Defender alert-list calls", ours.defender.alerts, base.defender.alerts, floor,
         ratio(base.defender.alerts, ours.defender.alerts), ratio(ours.defender.alerts, floor)],
        ["Defender calls, all APIs", ours.defender.total, base.defender.total, "",
         ratio(base.defender.total, ours.defender.total), ""],
        ["Defender 429 answers", ours.defender.throttled, base.defender.throttled, "", "", ""],
        [f"device cards posted (of {ours.commands})", len(ours.card_seconds), len(base.card_seconds), "", "", ""],
        ["error answers posted", ours.errors, base.errors, "", "", ""],
        ["card p50 (command → card)", *(ms(percentile(r.card_seconds, 50)) for r in (ours, base)), "",
         ratio(percentile(base.card_seconds, 50), percentile(ours.card_seconds, 50)), ""],
        ["card p95", *(ms(percentile(r.card_seconds, 95)) for r in (ours, base)), "",
         ratio(percentile(base.card_seconds, 95), percentile(ours.card_seconds, 95)), ""],
    ]  # fmt: skip
    return table(["figure", "ours", "baseline", "floor", "baseline / ours", "ours / floor"], rows)


def main(argv: Sequence[str] | None = None) -> dict[str, StormResult | int]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--devices", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60.0)
    add_load_options(parser)
    parser.add_argument("--quick", action="store_true", help="CI smoke size: 4 people × 3 devices over 2 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.people, args.devices, args.seconds = 4, 3, 2.0
    env = bot_env(args)
    ttl = float(env.get("ALERT_CACHE_TTL_SECONDS", TTL))
    timer = Timer()
    plan = storm_plan(args.people, args.devices, args.seconds)
    floor = floor_calls(plan, ttl)
    print(f"{machine()}; Defender latency {args.latency * 1000:.0f} ms; cache TTL {ttl:g} s")
    print(
        f"{args.people} people × {args.devices} devices ({len(plan)} commands, mixed filters) over {args.seconds:g} s\n"
    )
    results: dict[str, StormResult | int] = {
        kind: run_storm(kind, plan, latency=args.latency, env=env) for kind in APPS
    }
    results["floor"] = floor
    print(report({k: v for k, v in results.items() if isinstance(v, StormResult)}, floor))
    print(f"\n(ran in {timer})")
    return results


if __name__ == "__main__":
    main()
