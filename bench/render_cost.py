"""Benchmark 6: the worst-case card (one device with 10,000 alerts) and the memory of 10,000 cached devices.

Run: `.venv/bin/python -m bench.render_cost`; `--quick` is the CI smoke size.

- Render: the device's 10,000 alerts (the simulator's alerts, hostile ones included, repeated under new ids) come
  from an httpx transport in one page, with no latency. Ours: the lookup through `AlertService` (decode, parse,
  order; a cache miss), the same lookup with a filter from the cache (a cache hit), and the card alone
  (`device_card`, the Block Kit check every card passes, and the JSON body posted to the response_url).
  Baseline: `bench.baseline.app.lookup_text` (decode, parse to filter, render) and its card alone.
- Memory: peak RSS of a fresh process that builds the app (ours: `build_slack_bot` on a runtime
  whose Defender is an httpx transport, `ALERT_CACHE_MAXSIZE` = the device count), then looks up every device
  once, directly through the alert service (ours: each device's details and 5 alerts stay cached) or
  `lookup_text` (baseline: nothing stays). The same process with no lookups gives the starting point. Peak
  RSS is Linux's `VmHWM` of the process: `ru_maxrss` would not do, because Linux carries the high-water mark
  across `exec`, so a child reports at least the RSS of the benchmark process that started it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from bench.baseline.app import card_text, lookup_text
from bench.rig import OURS_ENV, ROOT, SIGNING_SECRET, Timer, device_id, machine, ratio, table
from bot.alerts.query import parse_query
from bot.alerts.service import AlertService
from bot.defender.auth import StaticTokenProvider
from bot.defender.client import DefenderClient
from bot.defender.simulator import AAD_TENANT_ID, SIMULATOR_BASE_URL, Json, SimulatedTenant
from bot.slack.actions import ButtonSeal
from bot.slack.blockkit import violations
from bot.slack.cards import CardContext, device_card

PORTAL = "https://security.microsoft.com"


def alert_records(machine_id: str, count: int, tenant: SimulatedTenant | None = None) -> list[Json]:
    """`count` alerts for one device: the simulator's alerts in turn (hostile ones too) under new ids."""
    source = (tenant or SimulatedTenant()).alerts
    return [
        {**source[k % len(source)], "id": f"da{k:010d}_{machine_id[:8]}", "machineId": machine_id} for k in range(count)
    ]


class FixedDefender:
    """An httpx handler answering every device's details and its alerts (in one page) from templates."""

    def __init__(self, alerts: Callable[[str], list[Json]]) -> None:
        self._alerts = alerts
        self._machine = SimulatedTenant().machines[0]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")
        if parts[-1] == "alerts":
            return httpx.Response(200, json={"value": self._alerts(parts[2])})
        return httpx.Response(200, json={**self._machine, "id": parts[2], "computerDnsName": f"{parts[2][:12]}.bench"})


def _best(work: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, max) seconds of `work` over `repeats` runs."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), max(times)


@dataclass(frozen=True, slots=True)
class RenderResult:
    alerts: int
    ours_miss: tuple[float, float]
    ours_hit: tuple[float, float]
    ours_card: tuple[float, float]
    ours_bytes: int
    ours_blocks: int
    ours_violations: int
    base_lookup: tuple[float, float]
    base_card: tuple[float, float]
    base_bytes: int


def measure_render(alerts: int = 10_000, repeats: int = 10) -> RenderResult:
    tenant = SimulatedTenant()
    machine_id = str(tenant.machines[0]["id"])
    records = alert_records(machine_id, alerts, tenant)
    transport = httpx.MockTransport(FixedDefender(lambda _: records))
    client = DefenderClient(SIMULATOR_BASE_URL, StaticTokenProvider("bench"), transport=transport)
    context = CardContext(PORTAL, AAD_TENANT_ID, seal=ButtonSeal.from_secret(SIGNING_SECRET))
    query = parse_query(f"{machine_id} severity:high,medium")

    def miss() -> object:
        return AlertService(client, ttl=60).device_alerts(machine_id)

    service = AlertService(client, ttl=3600)
    result = service.device_alerts(machine_id)

    def card_body() -> bytes:
        card = device_card(result, context)
        assert not violations(card)
        return json.dumps({**card.payload(), "replace_original": False, "response_type": "in_channel"}).encode()

    card = device_card(result, context)
    base_client = httpx.Client(base_url=SIMULATOR_BASE_URL, transport=transport)

    def base_body() -> bytes:
        return json.dumps({"text": card_text(machine_id, records), "response_type": "in_channel"}).encode()

    return RenderResult(
        alerts=alerts,
        ours_miss=_best(miss, repeats),
        ours_hit=_best(lambda: service.device_alerts(query.device, query.filters), repeats),
        ours_card=_best(card_body, repeats),
        ours_bytes=len(card_body()),
        ours_blocks=len(card.blocks),
        ours_violations=len(violations(card)),
        base_lookup=_best(lambda: lookup_text(base_client, machine_id), repeats),
        base_card=_best(base_body, repeats),
        base_bytes=len(base_body()),
    )


# -- memory, each figure in a fresh process ------------------------------------------------------------------------


def _fill(kind: str, devices: int, alerts_each: int) -> dict[str, Any]:
    """The child: build the app, look every device up once, report peak RSS."""
    from bench.baseline.app import build_baseline
    from bench.rig import TimedStandIn
    from bot.config import SlackMode, load_settings, load_slack_settings
    from bot.runtime import build_runtime, build_slack_bot

    def alerts_of(mid: str) -> list[Json]:
        return [{**template, "id": f"da{k:04d}_{mid}", "machineId": mid} for k, template in enumerate(templates)]

    templates = [a for a in SimulatedTenant().alerts if len(str(a.get("description", ""))) < 500][:alerts_each]
    transport = httpx.MockTransport(FixedDefender(alerts_of))
    standin = TimedStandIn()  # answers auth.test at start-up
    cached = 0
    if kind == "ours":
        env = {**OURS_ENV, "ALERT_CACHE_MAXSIZE": str(max(devices, 1))}
        settings = load_settings(env)
        runtime = build_runtime(settings)
        client = DefenderClient(SIMULATOR_BASE_URL, StaticTokenProvider("bench"), transport=transport)
        service = AlertService(
            client, ttl=3600, max_stale=settings.cache.max_stale, maxsize=settings.cache.maxsize
        )  # a TTL past the fill, so every entry is still there at the end
        runtime = dataclasses.replace(runtime, client=client, service=service)
        slack_env = {"SLACK_BOT_TOKEN": standin.bot_token, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                     "SLACK_API_URL": standin.api_url, **env}  # fmt: skip
        bot = build_slack_bot(runtime, load_slack_settings(SlackMode.HTTP, slack_env))
        for n in range(devices):
            service.device_alerts(device_id(n))
        cached = bot.runtime.service.cached_devices
    else:
        build_baseline(SimulatedTenant(), bot_token=standin.bot_token, signing_secret=SIGNING_SECRET,
                       slack_api_url=standin.api_url)  # fmt: skip
        base_client = httpx.Client(base_url=SIMULATOR_BASE_URL, transport=transport)
        for n in range(devices):
            lookup_text(base_client, device_id(n))
    return {"rss_kib": peak_rss_kib(), "cached": cached}


def peak_rss_kib() -> int:
    """This process image's peak resident set (`VmHWM`), in KiB; `ru_maxrss` where /proc is missing."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure_rss(kind: str, devices: int, alerts_each: int = 5) -> dict[str, Any]:
    output = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "bench.render_cost", "--child", kind, str(devices), str(alerts_each)],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=600,
    ).stdout  # fmt: skip
    document: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return document


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--alerts", type=int, default=10_000, help="alerts on the worst-case device")
    parser.add_argument("--devices", type=int, default=10_000, help="devices cached for the memory figure")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="CI smoke size: 1,000 alerts, 500 devices")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "DEVICES", "ALERTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_fill(args.child[0], int(args.child[1]), int(args.child[2]))), flush=True)
        return {}
    if args.quick:
        args.alerts, args.devices, args.repeats = 1000, 500, 2
    timer = Timer()
    print(f"{machine()}\n")
    render = measure_render(args.alerts, args.repeats)
    print(f"One device with {args.alerts:,} alerts (median / max of {args.repeats} runs)")

    def pair(figure: tuple[float, float]) -> str:
        return f"{figure[0] * 1000:,.1f} / {figure[1] * 1000:,.1f} ms"

    rows: list[list[object]] = [
        ["lookup, cache miss (decode, parse, order, filter)", pair(render.ours_miss), pair(render.base_lookup),
         ratio(render.base_lookup[0], render.ours_miss[0])],
        ["lookup, cache hit with a filter", pair(render.ours_hit), pair(render.base_lookup),
         ratio(render.base_lookup[0], render.ours_hit[0])],
        ["card only (render, check, JSON body)", pair(render.ours_card), pair(render.base_card),
         ratio(render.base_card[0], render.ours_card[0])],
        ["payload posted to the response_url", f"{render.ours_bytes:,} bytes ({render.ours_blocks} blocks)",
         f"{render.base_bytes:,} bytes (text)", ratio(render.base_bytes, render.ours_bytes)],
        ["Block Kit limit violations", render.ours_violations, "-", ""],
    ]  # fmt: skip
    print(table(["figure", "ours", "baseline", "baseline / ours"], rows))

    memory = {
        "ours, nothing cached": measure_rss("ours", 0),
        f"ours, {args.devices:,} devices cached": measure_rss("ours", args.devices),
        "baseline, no lookups": measure_rss("baseline", 0),
        f"baseline, after {args.devices:,} lookups": measure_rss("baseline", args.devices),
    }
    print(f"\nPeak RSS of the process, {args.devices:,} devices with 5 alerts each")
    print(
        table(
            ["process", "peak RSS", "devices cached"],
            [[name, f"{m['rss_kib'] / 1024:,.1f} MiB", f"{m['cached']:,}"] for name, m in memory.items()],
        )
    )
    ours_growth = (
        memory[f"ours, {args.devices:,} devices cached"]["rss_kib"] - memory["ours, nothing cached"]["rss_kib"]
    )
    if args.devices:
        per_device = ours_growth * 1024 / args.devices
        print(f"ours: {ours_growth / 1024:,.1f} MiB more with the cache full, {per_device:,.0f} bytes per device")
    print(f"\n(ran in {timer})")
    return {"render": render, "memory": memory}


if __name__ == "__main__":
    main()
