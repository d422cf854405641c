"""Benchmark 10: what the bot holds per device as the tenant grows (10,000 and 100,000 devices), and its largest card.

Run: `.venv/bin/python -m bench.tenant_scale` (defaults: `--devices 10000 100000 --alerts-each 3 --largest 1000`);
`--quick` is the CI smoke size. In process, no HTTP: the domain objects (`Machine`, `Alert`, parsed from the
simulator's records under new ids, as the client parses Defender's answers) are generated here, and an in-memory
`AlertSource` hands them to the bot's own `AlertService`. Memory is tracemalloc's (bytes still allocated after the
fill, minus before), so it counts what the bot keeps, not the generated tenant:

- cached device: one lookup by hostname of every device into an `AlertService` bounded at the tenant's size (its
  alert list, details, hostname -> id entry; the default bound `ALERT_CACHE_MAXSIZE` of 2,048 caps the total);
- name map: the hostname -> machine id entries alone (what the service keeps per name, `bot.alerts.devices`);
- watched device: one watch per device, up to `--watches` (default 100,000: every device), in the SQLite watch
  store (a file, as in production: bytes on disk), the time to start each, and the Python memory of one poll's
  `live_watches()` (every watch loaded, as the poller does each interval);
- largest card: the device with the most alerts (`--largest`, the simulator's hostile alerts included), rendered,
  checked against Block Kit's limits and serialised, median of 20; the baseline's text card beside it.

The baseline keeps nothing per device (every lookup calls Defender) and polls each watched device (benchmark 5).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cachetools

from bench.baseline.app import card_text
from bench.rig import SIGNING_SECRET, Timer, device_id, device_name, machine, table
from bot.alerts.devices import NAME_TTL
from bot.alerts.service import AlertService
from bot.defender.errors import DeviceNotFound
from bot.defender.limits import Priority
from bot.defender.models import Alert, Machine, parse_alert, parse_machine
from bot.defender.simulator import AAD_TENANT_ID, Json, SimulatedTenant
from bot.slack.actions import ButtonSeal
from bot.slack.blockkit import violations
from bot.slack.cards import CardContext, device_card
from bot.state.sqlite import SqliteWatchStore

PORTAL = "https://security.microsoft.com"


class GeneratedTenant:
    """An `AlertSource` over generated domain objects: device n has `alerts_each` alerts, device 0 `largest`."""

    def __init__(self, devices: int, alerts_each: int, largest: int) -> None:
        template = SimulatedTenant()
        self.machine_template: Json = template.machines[0]
        self.small = [a for a in template.alerts if len(str(a.get("description", ""))) < 500][:alerts_each]
        self.hostile = template.alerts  # every kind, the 10,000-character description included
        self.devices, self.alerts_each, self.largest = devices, alerts_each, largest
        self._by_name = {device_name(n): n for n in range(devices)}
        self._by_id = {device_id(n): n for n in range(devices)}

    def machine(self, n: int) -> Machine:
        return parse_machine({**self.machine_template, "id": device_id(n), "computerDnsName": device_name(n)})

    def alerts(self, n: int) -> list[Alert]:
        count = self.largest if n == 0 else self.alerts_each
        source = self.hostile if n == 0 else self.small
        mid = device_id(n)
        return [parse_alert({**source[k % len(source)], "id": f"da{n:07d}{k:05d}", "machineId": mid})
                for k in range(count)]  # fmt: skip

    def get_machine(self, id_or_name: str, *, priority: Priority = Priority.INTERACTIVE) -> Machine:
        n = self._by_name.get(id_or_name)
        if n is None:
            raise DeviceNotFound(id_or_name)
        return self.machine(n)

    def get_device_alerts(self, machine_id: str, *, priority: Priority = Priority.INTERACTIVE) -> list[Alert]:
        n = self._by_id.get(machine_id)
        if n is None:
            raise DeviceNotFound(machine_id)
        return self.alerts(n)

    def find_machines(
        self, hostname: str, *, prefix: bool = False, priority: Priority = Priority.INTERACTIVE
    ) -> list[Machine]:
        return []

    def list_alerts_updated_since(
        self, since: datetime, *, top: int = 0, priority: Priority = Priority.INTERACTIVE
    ) -> list[Alert]:
        return []

    def close(self) -> None:
        """Nothing to close."""


def traced(fill: Callable[[], object]) -> tuple[int, object]:
    """Bytes still allocated after `fill` (garbage collected), and what it returned (kept alive meanwhile)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = fill()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before, kept


@dataclass(frozen=True, slots=True)
class Scale:
    devices: int
    cached_bytes: int
    cached: int
    fill_seconds: float
    name_bytes: int
    names: int
    watch_disk_bytes: int
    watch_load_bytes: int
    watches: int
    watch_start_ms: float  # mean time to start one watch, over the fill
    card_ms: float
    card_bytes: int
    card_violations: int
    base_card_ms: float
    base_card_bytes: int


def measure(devices: int, alerts_each: int, largest: int, watches: int) -> Scale:
    tenant = GeneratedTenant(devices, alerts_each, largest)

    def fill_cache() -> AlertService:
        service = AlertService(tenant, ttl=3600, maxsize=devices)
        for n in range(devices):
            service.device_alerts(device_name(n))
        return service

    started = time.perf_counter()
    cached_bytes, service = traced(fill_cache)
    fill_seconds = time.perf_counter() - started
    assert isinstance(service, AlertService)
    cached = service.cached_devices
    service.close()
    del service

    def fill_names() -> cachetools.TTLCache[str, str]:
        names: cachetools.TTLCache[str, str] = cachetools.TTLCache(devices, NAME_TTL)
        for n in range(devices):
            names[device_name(n)] = device_id(n)
        return names

    name_bytes, names = traced(fill_names)
    names_count = len(names)  # type: ignore[arg-type]
    del names
    watch_disk, watch_load, watched, watch_ms = _watches(min(devices, watches))
    card_ms, card_bytes, card_violations, base_ms, base_bytes = _largest_card(tenant)
    return Scale(devices, cached_bytes, cached, fill_seconds, name_bytes, names_count, watch_disk, watch_load, watched,
                 watch_ms, card_ms, card_bytes, card_violations, base_ms, base_bytes)  # fmt: skip


def _watches(devices: int) -> tuple[int, int, int, float]:
    """(bytes on disk, bytes of one poll's `live_watches()`, live watches, ms per start) with one watch per device."""
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "watches.db"
        store = SqliteWatchStore(path)
        try:
            empty = _disk_bytes(path)
            started = time.perf_counter()
            for n in range(devices):
                store.start_watch(channel=f"C{n % 20:08d}", machine_id=device_id(n), device_name=device_name(n),
                                  filter_text="severity:high", user="U0ALICE", expires_at=now + timedelta(days=7),
                                  now=now)  # fmt: skip
            start_ms = (time.perf_counter() - started) / max(devices, 1) * 1000
            disk = _disk_bytes(path) - empty
            load_bytes, live = traced(store.live_watches)
            count = len(live)  # type: ignore[arg-type]
        finally:
            store.close()
    return disk, load_bytes, count, start_ms


def _disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def _largest_card(tenant: GeneratedTenant) -> tuple[float, int, int, float, int]:
    service = AlertService(tenant, ttl=3600)
    result = service.device_alerts(device_id(0))
    service.close()
    context = CardContext(PORTAL, AAD_TENANT_ID, seal=ButtonSeal.from_secret(SIGNING_SECRET))
    records: list[dict[str, Any]] = [
        {"severity": a.severity.value, "title": a.title, "status": a.status.value} for a in result.alerts
    ]

    def ours() -> bytes:
        card = device_card(result, context)
        assert not violations(card)
        return json.dumps({**card.payload(), "response_type": "in_channel"}).encode()

    def baseline() -> bytes:
        return json.dumps({"text": card_text(result.machine_id, records), "response_type": "in_channel"}).encode()

    return (_median_ms(ours), len(ours()), len(violations(device_card(result, context))),
            _median_ms(baseline), len(baseline()))  # fmt: skip


def _median_ms(work: Callable[[], object], repeats: int = 20) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def report(scales: Sequence[Scale], alerts_each: int, largest: int) -> str:
    rows: list[list[object]] = []
    for s in scales:
        rows.append([f"{s.devices:,}", f"{s.cached_bytes / s.cached / 1024:.1f} KiB ({s.cached_bytes / 2**20:,.0f} MiB "
                     f"for {s.cached:,})", f"{s.cached_bytes / s.cached * 2048 / 2**20:.0f} MiB",
                     f"{s.name_bytes / s.names:.0f} B ({s.name_bytes / 2**20:.1f} MiB)",
                     f"{s.watch_disk_bytes / s.watches:,.0f} B ({s.watches:,} watches)",
                     f"{s.watch_load_bytes / s.watches:,.0f} B", f"{s.watch_start_ms:.2f} ms",
                     f"{s.card_ms:.1f} ms, {s.card_bytes:,} B", f"{s.base_card_ms:.1f} ms, {s.base_card_bytes:,} B",
                     "0 (keeps nothing)"])  # fmt: skip
    headers = [
        "devices", f"ours: per cached device ({alerts_each} alerts)", "ours: at the default bound (2,048)",
        "ours: name map per entry (all)", "ours: per watch on disk", "ours: per watch loaded per poll",
        "ours: starting a watch",
        f"ours: largest card ({largest:,} alerts)", "baseline: its card", "baseline: per device kept",
    ]  # fmt: skip
    return table(headers, rows)


def main(argv: Sequence[str] | None = None) -> list[Scale]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--alerts-each", type=int, default=3)
    parser.add_argument("--watches", type=int, default=100_000, help="at most this many watched devices")
    parser.add_argument("--largest", type=int, default=1000, help="alerts on the largest device")
    parser.add_argument("--quick", action="store_true", help="CI smoke size: 1,000 devices")
    args = parser.parse_args(argv)
    if args.quick:
        args.devices, args.largest = [1000], 100
    timer = Timer()
    print(f"{machine()}; {args.alerts_each} alerts per device, the largest {args.largest:,}\n")
    scales = [measure(n, args.alerts_each, args.largest, args.watches) for n in args.devices]
    print(report(scales, args.alerts_each, args.largest))
    for s in scales:
        print(
            f"{s.devices:,} devices: cache filled in {s.fill_seconds:.1f} s; Block Kit violations {s.card_violations}"
        )
    print(f"\n(ran in {timer})")
    return scales


if __name__ == "__main__":
    main()
