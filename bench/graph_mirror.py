"""Benchmark 7: the Microsoft Graph alert mirror's backfill: time, Graph calls and memory for N alerts.

Run: `.venv/bin/python -m bench.graph_mirror` (tenants of 10,000 and 50,000 alerts over 1,021 devices, no
latency); `--quick` is the CI smoke size (1,000 alerts). In process, no HTTP server: `GraphClient` (the bot's
defaults: pages of 1,000, at most 50 pages a read, no budget gate) + `GraphAlertSource` (30 days of backfill)
over `SimulatorTransport`, as `DEFENDER_API=graph` wires them.

The tenant holds exactly N alerts, copies of the simulator's built-in ones in turn (their mix of titles and
descriptions, the hostile 10,000-character one included), spread round-robin over its 21 devices plus the extra
ones, created one by one at even steps across the backfill window (so every alert is due and no two share a
`createdDateTime`). Each size runs two backfills on the same tenant: one timed, one under `tracemalloc`
(tracing slows Python down, so it is not timed). Memory is what `tracemalloc` counts as still allocated once the
backfill is over and garbage collected, minus what it counted before the mirror was built: the mirror's alerts,
indexes and device records (Python objects; not the process's RSS).

The simulator converts its alerts to Graph's shape once, before timing, and filters and sorts them once per
`$filter` rather than for every page (the stock one does all three on every request: the simulator's cost, not
the bot's; at 50,000 alerts about 0.85 s a page); what it still spends answering is reported apart and taken out
of the bot's time.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.rig import Timer, add_devices, machine, table
from bot.alerts.mirror import GraphAlertSource
from bot.defender.auth import StaticTokenProvider
from bot.defender.graph import ALERTS_PATH, GraphClient
from bot.defender.simulator import GRAPH_SIMULATOR_BASE_URL, Json, SimulatedTenant, SimulatorTransport
from bot.defender.simulator.dataset import iso
from bot.defender.simulator.graph import (
    GRAPH_CONTEXT,
    MAX_PAGE,
    _fingerprint,
    _number,
    _offset,
    _skiptoken,
    alerts_page,
    filter_predicates,
    graph_alerts,
)
from bot.defender.simulator.odata import GRAPH_ALERTS, ticks

BACKFILL = timedelta(days=30)  # DEFENDER_GRAPH_BACKFILL_DAYS' default
SIZES = (10_000, 50_000)
EXTRA_DEVICES = 1_000


class MirrorTenant(SimulatedTenant):
    """The simulator with its Graph view of the alerts converted once (`prepare`) and its serving time summed."""

    def __init__(self, **kwargs: Any) -> None:
        self.serve_seconds = 0.0
        self.statuses: list[int] = []
        self._converted: list[Json] | None = None
        self._matches: dict[str, list[Json]] = {}  # $filter -> its alerts, newest created first
        super().__init__(**kwargs)

    def prepare(self) -> None:
        """Convert every alert to Graph's shape now; call again after changing the alerts."""
        with self._lock:
            self._converted = graph_alerts(self.alerts, self.machines, self.links)
            self._matches.clear()

    def per_device(self) -> dict[str, int]:
        """How many alerts name each device in their evidence (a lateral-movement alert names two)."""
        counts: dict[str, int] = {}
        for alert in self._converted or []:
            for device in {e["mdeDeviceId"] for e in alert["evidence"] if e.get("mdeDeviceId")}:
                counts[device] = counts.get(device, 0) + 1
        return counts

    def serve(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        response = super().serve(request)
        self.serve_seconds += time.perf_counter() - started
        self.statuses.append(response.status_code)
        return response

    def _graph(self, kind: str, request: httpx.Request, token: str) -> httpx.Response:
        if kind != GRAPH_ALERTS or self._converted is None or request.method != "GET" or self._faults:
            return super()._graph(kind, request, token)
        self._admit(kind)  # the same per-minute limit (150) as the stock simulator
        params = request.url.params
        if set(params) - {"$filter", "$top", "$skiptoken"}:
            return alerts_page(request.url, self._converted, self.graph_page_size)
        # As `alerts_page` answers, with each filter's matches kept in order across the pages of one read.
        expression = params.get("$filter") or ""
        if expression not in self._matches:
            predicates = filter_predicates(expression) if expression else []
            matches = [alert for alert in self._converted if all(p(alert) for p in predicates)]
            self._matches[expression] = sorted(matches, key=_newest_first, reverse=True)
        found = self._matches[expression]
        size = min(_number(params, "$top", self.graph_page_size, MAX_PAGE), self.graph_page_size)
        end = _offset(params) + size
        body: Json = {"@odata.context": GRAPH_CONTEXT, "value": found[end - size : end]}
        if size and end < len(found):
            body["@odata.nextLink"] = str(
                request.url.copy_set_param("$skiptoken", _skiptoken(end, _fingerprint(params)))
            )
        return httpx.Response(200, json=body)


def _newest_first(alert: Json) -> tuple[int, str]:
    return ticks(alert.get("createdDateTime")) or 0, str(alert["id"])


def fill(tenant: SimulatedTenant, alerts: int, extra_devices: int, now: datetime) -> None:
    """Replace the tenant's alerts with `alerts` copies of its built-in ones, spread over its devices."""
    add_devices(tenant, extra_devices)
    templates, machines = list(tenant.alerts), list(tenant.machines)
    tenant.alerts.clear()
    step = BACKFILL / (alerts + 1)
    for n in range(alerts):
        target = machines[n % len(machines)]
        created = iso(now - BACKFILL + step * (n + 1))
        template = templates[n % len(templates)]
        tenant.alerts.append({
            **template, "id": f"gm{n:010d}", "incidentId": 900_000 + n // 4, "machineId": target["id"],
            "computerDnsName": target["computerDnsName"], "rbacGroupName": target["rbacGroupName"],
            "alertCreationTime": created, "firstEventTime": created, "lastEventTime": created,
            "lastUpdateTime": created, "resolvedTime": created if template.get("resolvedTime") else None,
        })  # fmt: skip


@dataclass
class Backfill:
    alerts: int  # in the tenant
    devices: int  # devices with alerts
    mirrored: int  # alerts in the mirror after the backfill
    devices_mirrored: int  # devices whose alert list in the mirror has as many alerts as the tenant's evidence
    graph_calls: int  # alerts_v2 requests (pages)
    reads: int  # reads (the first page of each; more than 1: the mirror read on after an incomplete answer)
    throttled: int
    wall: float  # seconds
    simulator: float  # seconds of `wall` the simulator spent answering
    retained: int = 0  # bytes (tracemalloc) still allocated after the backfill
    peak: int = 0  # bytes (tracemalloc) at the peak of the backfill
    notes: list[str] = field(default_factory=list)

    @property
    def bot_seconds(self) -> float:
        return self.wall - self.simulator

    @property
    def per_10k(self) -> float:
        return self.retained * 10_000 / self.mirrored if self.mirrored else 0.0


def _source(tenant: SimulatedTenant, now: datetime) -> GraphAlertSource:
    client = GraphClient(
        GRAPH_SIMULATOR_BASE_URL, StaticTokenProvider("simulator"), transport=SimulatorTransport(tenant)
    )
    return GraphAlertSource(client, backfill=BACKFILL, now=lambda: now)


def run_size(alerts: int, *, extra_devices: int = EXTRA_DEVICES, latency: float = 0.0) -> Backfill:
    now = datetime.now(UTC)
    tenant = MirrorTenant(now=lambda: now)
    fill(tenant, alerts, extra_devices, now)
    tenant.prepare()
    expected = tenant.per_device()
    tenant.latency = latency

    first = len(tenant.request_log)
    source = _source(tenant, now)
    started = time.perf_counter()
    source.sync()
    wall = time.perf_counter() - started
    source.close()
    requests = [path for _, path in tenant.request_log[first:] if path.startswith(ALERTS_PATH)]
    matching = sum(len(source.get_device_alerts(device)) == count for device, count in expected.items())
    result = Backfill(
        alerts=alerts, devices=len(expected), mirrored=source.store.alert_count(), devices_mirrored=matching,
        graph_calls=len(requests), reads=sum("$skiptoken" not in path for path in requests),
        throttled=tenant.statuses[first:].count(429), wall=wall, simulator=tenant.serve_seconds,
    )  # fmt: skip
    del source
    tenant.latency = 0.0

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        traced = _source(tenant, now)
        traced.sync()
        traced.close()
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if traced.store.alert_count() != result.mirrored:
        result.notes.append(f"the traced backfill mirrored {traced.store.alert_count():,} alerts")
    result.retained, result.peak = after - before, peak - before
    return result


def mib(size: float) -> str:
    return f"{size / 2**20:,.1f} MiB"


def report(results: Sequence[Backfill], latency: float) -> str:
    rows: list[list[object]] = []
    for r in results:
        rows.append([
            f"{r.alerts:,}", f"{r.mirrored:,}", f"{r.devices_mirrored:,} of {r.devices:,}", r.graph_calls, r.reads,
            r.throttled, f"{r.wall:,.2f} s", f"{r.simulator:,.2f} s", f"{r.bot_seconds:,.2f} s",
            mib(r.retained), mib(r.per_10k), mib(r.peak),
        ])  # fmt: skip
    latency_note = f" at {latency * 1000:.0f} ms" if latency else ""
    return table(
        ["alerts in tenant", "mirrored", "devices complete", "Graph calls (pages)", "reads", "429",
         f"backfill wall{latency_note}", "of which simulator", "bot", "mirror memory (tracemalloc)",
         "per 10,000 alerts", "peak during backfill"],
        rows,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> list[Backfill]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--alerts", type=int, nargs="+", default=list(SIZES), help="tenant sizes to backfill")
    parser.add_argument("--devices", type=int, default=EXTRA_DEVICES, help="extra devices besides the built-in 21")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per Graph request")
    parser.add_argument("--quick", action="store_true", help="CI smoke size: 1,000 alerts over 121 devices")
    args = parser.parse_args(argv)
    if args.quick:
        args.alerts, args.devices = [1_000], 100
    timer = Timer()
    print(f"{machine()}; Graph latency {args.latency * 1000:.0f} ms; backfill {BACKFILL.days} days")
    print("GraphClient defaults: pages of 1,000, at most 50 pages a read; simulator limit 150 alerts_v2 calls/min\n")
    results = [run_size(n, extra_devices=args.devices, latency=args.latency) for n in args.alerts]
    print(report(results, args.latency))
    for r in results:
        for note in r.notes:
            print(f"- {r.alerts:,}: {note}")
    print(f"\n(ran in {timer})")
    return results


if __name__ == "__main__":
    main()
