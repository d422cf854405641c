"""Benchmark 2: Defender calls during an incident storm, ours against the naive baseline and the floor.

Run: `.venv/bin/python -m bench.incident_storm` (20 people × 5 devices, each person asks once about each device
with one of six filter mixes, at random moments over 60 s; Defender latency 300 ms); `--quick` is the CI smoke
size. Real time, over HTTP (see `bench.rig`). The floor is what any cache with the bot's TTL must spend: for
each device, the number of TTL-long windows needed to cover the moments it was asked about.

`--api mde|graph|both` (default both) picks the API ours reads alerts from (`DEFENDER_API`): the Defender for
Endpoint API (per-device alert lists) and/or Microsoft Graph (the tenant's alert mirror, `bot.alerts.mirror`).
The baseline always calls the Defender for Endpoint API. Calls are counted per API from what the simulator served.
"""

from __future__ import annotations

import argparse
import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.rig import (
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

# The runs: what each result is called, which app it is, and the API ours reads alerts from.
RUNS = {"ours": ("ours", "mde"), "graph": ("ours", "graph"), "baseline": ("baseline", "mde")}
LABELS = {"ours": "ours, MDE API", "graph": "ours, Graph API", "baseline": "baseline (MDE API)"}
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


def runs_for(api: str) -> list[str]:
    """The results to produce for `--api`: ours on each API asked for, then the baseline."""
    return [*(["ours"] if api in ("mde", "both") else []), *(["graph"] if api in ("graph", "both") else []), "baseline"]


def alert_lists(calls: DefenderCalls) -> int:
    """Alert-list calls: per-device lists (MDE API) plus alerts_v2 pages (Graph)."""
    return calls.alerts + calls.graph_alerts


def per_100(calls: int, lookups: int) -> str:
    return f"{calls * 100 / lookups:,.1f}" if lookups else "-"


def report(results: dict[str, StormResult], floor: int) -> str:
    """One column per run; the ratios compare ours on the MDE API with the baseline, and Graph with MDE."""
    names = [name for name in RUNS if name in results]
    runs = [results[name] for name in names]
    lookups = runs[0].commands
    with_ours, with_both = "ours" in results, "ours" in results and "graph" in results

    def row(label: str, values: Sequence[object], figures: Sequence[float] | None = None, low: object = "",
            show: Callable[[object], object] = lambda v: v) -> list[object]:  # fmt: skip
        by = dict(zip(names, figures if figures is not None else [math.nan] * len(names), strict=True))
        cells: list[object] = [label, *(show(v) for v in values), low]
        if with_ours:
            cells.append(ratio(by["baseline"], by["ours"]) if figures is not None else "")
        if with_both:
            cells.append(ratio(by["graph"], by["ours"]) if figures is not None else "")
        return cells

    def counts(label: str, values: Sequence[int], low: object = "", compare: bool = True) -> list[object]:
        return row(label, values, [float(v) for v in values] if compare else None, low)

    def card(q: float) -> list[float]:
        return [percentile(r.card_seconds, q) for r in runs]

    totals = [r.defender.total for r in runs]
    rows: list[list[object]] = [
        counts(
            "alert-list calls (MDE: per device; Graph: alerts_v2 pages)", [alert_lists(r.defender) for r in runs], floor
        ),
        counts(
            "device calls (MDE: `/api/machines/{id}`; Graph: hunting)",
            [r.defender.details + r.defender.hunting for r in runs],
        ),
        counts("other calls", [r.defender.other for r in runs], compare=False),
        counts("calls, all APIs", totals),
        row("calls, all APIs, per 100 lookups", [per_100(t, lookups) for t in totals]),
        row("Graph calls per 100 lookups", [per_100(r.defender.graph, lookups) for r in runs]),
        counts("429 answers", [r.defender.throttled for r in runs], compare=False),
        counts(f"device cards posted (of {lookups})", [len(r.card_seconds) for r in runs], compare=False),
        counts("error answers posted", [r.errors for r in runs], compare=False),
        row("card p50 (command → card)", card(50), card(50), show=lambda v: ms(float(v))),  # type: ignore[arg-type]
        row("card p95", card(95), card(95), show=lambda v: ms(float(v))),  # type: ignore[arg-type]
    ]
    headers = ["figure", *(LABELS[name] for name in names), "floor"]
    headers += ["baseline / ours (MDE)"] if with_ours else []
    headers += ["Graph / MDE (ours)"] if with_both else []
    return table(headers, rows)


def main(argv: Sequence[str] | None = None) -> dict[str, StormResult | int]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--devices", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60.0)
    add_load_options(parser)
    parser.add_argument("--api", choices=("mde", "graph", "both"), default="both", help="DEFENDER_API for ours")
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
    results: dict[str, StormResult | int] = {}
    for name in runs_for(args.api):
        kind, api = RUNS[name]
        results[name] = run_storm(kind, plan, latency=args.latency, env={"DEFENDER_API": api, **env})
    results["floor"] = floor
    print(report({k: v for k, v in results.items() if isinstance(v, StormResult)}, floor))
    print(f"\n(ran in {timer})")
    return results


if __name__ == "__main__":
    main()
