"""Benchmark 1: acknowledgement latency under a burst of slash commands, ours against the naive baseline.

Run: `.venv/bin/python -m bench.ack_burst` (200 commands over 2 s for 10 devices, Defender latency 300 ms);
`--quick` is the CI smoke size. Each app runs in its own process over HTTP on 127.0.0.1 (see `bench.rig`), one
after the other, each against a fresh Defender double and a cold cache. The commands are sent on a fixed
schedule whatever the answers take (open loop), round-robin over the devices, by 50 different people.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.rig import (
    ACK_DEADLINE,
    APPS,
    DEFAULT_LATENCY,
    AppProcess,
    DefenderCalls,
    Planned,
    Sent,
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

PEOPLE = 50


@dataclass(frozen=True, slots=True)
class BurstResult:
    app: str
    sent: list[Sent]
    card_seconds: list[float]  # command sent -> device card at its response_url, for every card that arrived
    errors: int  # other answers at the response_urls (the baseline's "Defender answered 429")
    defender: DefenderCalls
    drained: float  # seconds from the first command until the last card arrived

    @property
    def ack_seconds(self) -> list[float]:
        return [s.latency for s in self.sent]

    @property
    def over_deadline(self) -> int:
        """Commands Slack would have shown as failed: no 200 answer within 3 s."""
        return sum(not s.acked_in_time for s in self.sent)

    @property
    def busy(self) -> int:
        return sum(s.busy for s in self.sent)

    @property
    def cards(self) -> int:
        return len(self.card_seconds)


def run_burst(
    kind: str,
    *,
    commands: int = 200,
    seconds: float = 2.0,
    devices: int = 10,
    latency: float = DEFAULT_LATENCY,
    env: dict[str, str] | None = None,
) -> BurstResult:
    standin = TimedStandIn()
    try:
        with AppProcess(kind, standin, latency=latency, devices=devices, env=env) as app:
            ids = [device_id(n) for n in range(devices)]
            plan = [
                Planned(at=i * seconds / commands, text=ids[i % devices], name=f"r{i}", user=f"U0BENCH{i % PEOPLE:03d}")
                for i in range(commands)
            ]
            sent = send_commands(app, standin, plan)
            # A busy note is the whole answer; every other command ends with a message at its response_url.
            expected = [s.planned.name for s in sent if not s.busy]
            standin.wait_for(expected, timeout=30 + commands * latency)
            first = min(s.sent_at for s in sent)
            cards, errors = standin.card_seconds(sent)
            drained = max(standin.arrivals.values(), default=math.nan) - first
            return BurstResult(kind, sent, cards, errors, app.defender(), drained)
    finally:
        standin.close_soon()


# (figure, how to read it off a run, whether it is a time)
FIGURES: list[tuple[str, Callable[[BurstResult], float], bool]] = [
    ("ack p50", lambda r: percentile(r.ack_seconds, 50), True),
    ("ack p95", lambda r: percentile(r.ack_seconds, 95), True),
    ("ack p99", lambda r: percentile(r.ack_seconds, 99), True),
    ("ack max", lambda r: max(r.ack_seconds), True),
    (f"acks over {ACK_DEADLINE:.0f} s (or none)", lambda r: r.over_deadline, False),
    ("'busy' answers", lambda r: r.busy, False),
    ("device cards posted", lambda r: r.cards, False),
    ("error answers posted", lambda r: r.errors, False),
    ("card p50 (command → card)", lambda r: percentile(r.card_seconds, 50), True),
    ("card p95", lambda r: percentile(r.card_seconds, 95), True),
    ("last card after", lambda r: r.drained, True),
    ("Defender alert-list calls", lambda r: r.defender.alerts, False),
    ("Defender calls, all APIs", lambda r: r.defender.total, False),
    ("Defender 429 answers", lambda r: r.defender.throttled, False),
]


def report(results: dict[str, BurstResult]) -> str:
    ours, base = results["ours"], results["baseline"]
    rows = []
    for name, read, timed in FIGURES:
        o, b = float(read(ours)), float(read(base))
        shown = (ms(o), ms(b)) if timed else (f"{o:,.0f}", f"{b:,.0f}")
        rows.append([name, *shown, ratio(b, o)])
    return table(["figure", "ours", "baseline", "baseline / ours"], rows)


def main(argv: Sequence[str] | None = None) -> dict[str, BurstResult]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--devices", type=int, default=10)
    add_load_options(parser)
    parser.add_argument("--quick", action="store_true", help="CI smoke size: 30 commands over 0.5 s, 5 devices")
    args = parser.parse_args(argv)
    if args.quick:
        args.commands, args.seconds, args.devices = 30, 0.5, 5
    env = bot_env(args)
    timer = Timer()
    print(f"{machine()}; Defender latency {args.latency * 1000:.0f} ms")
    print(f"{args.commands} slash commands over {args.seconds:g} s for {args.devices} devices, cold cache\n")
    results = {
        kind: run_burst(
            kind, commands=args.commands, seconds=args.seconds, devices=args.devices, latency=args.latency, env=env
        )
        for kind in APPS
    }
    print(report(results))
    print(f"\n(ran in {timer})")
    return results


if __name__ == "__main__":
    main()
