"""Benchmark 10: the simulator's enterprise tenant (100,000 devices) and what a short-name lookup costs in it.

Run: `.venv/bin/python -m bench.enterprise_tenant`; `--quick` is the CI smoke size (10,000 devices).

- Tenant: the time to build `SimulatedTenant(fleet=FleetSpec(devices))` and the memory it keeps (tracemalloc:
  Python allocations made while building it, still held afterwards, and their peak).
- Lookups, through `AlertService` on `DefenderClient`: `ws` (a short name that starts 65 % of the device names:
  the answer is five suggestions) and the full name of a re-onboarded device (two records). For each: Defender
  calls, records and bytes that crossed the wire, and the wall time.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Sequence
from typing import Any

import httpx

from bench.rig import table
from bot.alerts.service import AlertService
from bot.defender.auth import StaticTokenProvider
from bot.defender.client import DefenderClient
from bot.defender.errors import DeviceNotFound
from bot.defender.simulator import SIMULATOR_BASE_URL, SimulatedTenant, SimulatorTransport
from bot.defender.simulator.fleet import FleetSpec

RE_ONBOARDED = "ws-000000.corp.contoso.com"


class _Wire(httpx.BaseTransport):
    """The simulator's transport, summing the records and bytes of every answer."""

    def __init__(self, tenant: SimulatedTenant) -> None:
        self.inner = SimulatorTransport(tenant)
        self.calls = self.records = self.bytes = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        content = response.read()
        self.calls += 1
        self.bytes += len(content)
        value = response.json().get("value")
        self.records += len(value) if isinstance(value, list) else 1
        return response


def build(devices: int) -> tuple[SimulatedTenant, dict[str, float]]:
    tracemalloc.start()
    started = time.perf_counter()
    tenant = SimulatedTenant(calls_per_minute=10**6, calls_per_hour=10**6, fleet=FleetSpec(devices=devices))
    seconds = time.perf_counter() - started
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return tenant, {"build_s": seconds, "kept_mib": kept / 2**20, "peak_mib": peak / 2**20}


def lookup(tenant: SimulatedTenant, reference: str) -> dict[str, Any]:
    wire = _Wire(tenant)
    started = time.perf_counter()
    with DefenderClient(SIMULATOR_BASE_URL, StaticTokenProvider("bench"), transport=wire) as client:
        try:
            answer = f"device {AlertService(client).device_alerts(reference).machine_id[:8]}…"
        except DeviceNotFound as miss:
            answer = f"{len(miss.suggestions)} suggestions"
    seconds = time.perf_counter() - started
    return {"ref": reference, "answer": answer, "calls": wire.calls, "records": wire.records, "bytes": wire.bytes,
            "s": seconds}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="CI smoke size: 10,000 devices")
    args = parser.parse_args(argv)
    devices = 10_000 if args.quick else args.devices
    tenant, built = build(devices)
    print(f"tenant: {devices:,} devices ({len(tenant.fleet):,} records, {len(tenant.alerts):,} alerts)")
    print(f"  built in {built['build_s']:.2f} s, keeps {built['kept_mib']:.1f} MiB (peak {built['peak_mib']:.1f})")
    lookups = [lookup(tenant, "ws"), lookup(tenant, RE_ONBOARDED)]
    rows = [[r["ref"], r["answer"], r["calls"], r["records"], f"{r['bytes']:,}", f"{r['s']:.3f}"] for r in lookups]
    print(table(["lookup", "answer", "calls", "records", "bytes", "s"], rows))
    return {"devices": devices, "records": len(tenant.fleet), **built, "lookups": lookups}


if __name__ == "__main__":
    main()
