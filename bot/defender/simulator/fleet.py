"""An enterprise-sized fleet on top of the built-in devices: machine records made on demand from their position.

`FleetSpec(devices=100_000)` gives a tenant with 100,000 more devices (65 % `ws-…`, 25 % `lt-…`, 10 % `srv-…`,
all under `corp.contoso.com`). Every `reonboarded_every`-th device was re-imaged or re-onboarded: its name has
a second, stale record (another id, last seen weeks ago, `Inactive` or `NoSensorData`), listed *before* the
live one so that "first record wins" shows. Every `alerting_every`-th device has alerts on each of its records
(the tenant creates those as ordinary alerts). Nothing per device is stored but one integer per record: names,
ids and fields are computed from the position, names in sorted order so that a prefix is a range found by
bisection, and ids carry their position so that a lookup by id costs no index either.
"""

from __future__ import annotations

import hashlib
import random
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.defender.simulator.dataset import RBAC_GROUPS, SEED, Json, iso

DOMAIN = "corp.contoso.com"
# (name prefix, share of the fleet, device group, platform, version, build), in the names' sort order.
FAMILIES = (
    ("lt", 0.25, "Laptops", "Windows11", "23H2", 22631),
    ("srv", 0.10, "Servers", "WindowsServer2022", "21H2", 20348),
    ("ws", 0.65, "Workstations", "Windows11", "23H2", 22631),
)
# Ids start with the record's position times an odd number modulo 2**32 (undone by its inverse): not sequential.
_SPREAD = 0x9E3779B1
_UNSPREAD = pow(_SPREAD, -1, 2**32)
_LAST = "\U0010ffff"


@dataclass(frozen=True, slots=True)
class FleetSpec:
    """How large a fleet the simulated tenant has beyond its built-in devices (none by default)."""

    devices: int = 0
    reonboarded_every: int = 20  # this device and every n-th after it left a stale record under its name
    alerting_every: int = 200  # this device and every n-th after it has alerts on each of its records

    def __post_init__(self) -> None:
        if not 0 <= self.devices <= 1_000_000 or self.reonboarded_every < 1 or self.alerting_every < 1:
            raise ValueError("a fleet has 0-1,000,000 devices and positive intervals")


class Fleet:
    """The fleet's machine records, in name order, each made when asked for."""

    def __init__(self, spec: FleetSpec, now: datetime) -> None:
        self.spec = spec
        self._now = now
        # One entry per record: device number * 2, plus 1 for the live record (the stale one comes first).
        self._codes = array("q")
        for device in range(spec.devices):
            if device % spec.reonboarded_every == 0:
                self._codes.append(device * 2)
            self._codes.append(device * 2 + 1)
        self._starts: list[int] = []
        start = 0
        for _, share, *_ in FAMILIES:
            self._starts.append(start)
            start += round(spec.devices * share)

    def __len__(self) -> int:
        return len(self._codes)

    def name(self, position: int) -> str:
        device = self._codes[position] >> 1
        family = max(i for i, start in enumerate(self._starts) if start <= device)
        return f"{FAMILIES[family][0]}-{device - self._starts[family]:06d}.{DOMAIN}"

    def machine_id(self, position: int) -> str:
        digest = hashlib.sha1(f"{self.name(position)}|{self._codes[position] & 1}".encode(), usedforsecurity=False)
        return f"{position * _SPREAD % 2**32:08x}{digest.hexdigest()[8:]}"

    def by_id(self, machine_id: str) -> int | None:
        """The position of the record with this id, if it is one of the fleet's."""
        try:
            position = int(machine_id[:8], 16) * _UNSPREAD % 2**32
        except ValueError:
            return None
        if 0 <= position < len(self) and self.machine_id(position) == machine_id.lower():
            return position
        return None

    def named(self, name: str) -> range:
        """Positions of the records whose name is `name` (case-insensitive), stale ones first."""
        folded, positions = name.casefold(), range(len(self))
        return range(bisect_left(positions, folded, key=self.name), bisect_right(positions, folded, key=self.name))

    def prefixed(self, prefix: str) -> range:
        """Positions of the records whose name starts with `prefix` (case-insensitive)."""
        folded = prefix.casefold()
        positions = range(len(self))
        start = bisect_left(positions, folded, key=self.name)
        return range(start, bisect_left(positions, folded + _LAST, start, key=self.name))

    def alerting(self) -> list[int]:
        """Positions of the records that have alerts."""
        return [p for p, code in enumerate(self._codes) if (code >> 1) % self.spec.alerting_every == 0]

    def record(self, position: int) -> Json:
        """The Defender machine record at `position`."""
        code = self._codes[position]
        device, live = code >> 1, bool(code & 1)
        rng = random.Random(SEED * 1_000_003 + code)
        family = FAMILIES[max(i for i, start in enumerate(self._starts) if start <= device)]
        _, _, group, platform, version, build = family
        if live:
            last_seen = self._now - timedelta(minutes=rng.randint(2, 48 * 60))
            health = rng.choices(("Active", "ImpairedCommunication", "NoSensorData"), (90, 6, 4))[0]
        else:  # the record the device had before it was re-imaged: offboarded, lingering for weeks
            last_seen = self._now - timedelta(days=rng.randint(7, 60), minutes=rng.randint(0, 1_439))
            health = rng.choice(("Inactive", "NoSensorData"))
            platform, version, build = ("Windows10", "22H2", 19045) if platform == "Windows11" else family[3:]
        internal = f"10.{rng.randint(41, 120)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}"
        return {
            "id": self.machine_id(position),
            "computerDnsName": self.name(position),
            "firstSeen": iso(last_seen - timedelta(days=rng.randint(30, 700)), 7),
            "lastSeen": iso(last_seen, 7),
            "osPlatform": platform,
            "osVersion": None,
            "osProcessor": "x64",
            "version": version,
            "osBuild": build,
            "lastIpAddress": internal,
            "lastExternalIpAddress": f"198.51.100.{rng.randint(1, 254)}",
            "healthStatus": health,
            "onboardingStatus": "Onboarded",
            "rbacGroupName": group,
            "rbacGroupId": RBAC_GROUPS[group],
            "riskScore": rng.choice(("None", "Low", "Medium", "High")),
            "exposureLevel": rng.choice(("Low", "Medium", "High")),
            "deviceValue": "Normal",
            "isAadJoined": True,
            "aadDeviceId": f"{rng.getrandbits(32):08x}-{device % 65_536:04x}-4{code % 4_096:03x}-8000-{device:012x}",
            "machineTags": [],
        }


class Directory:
    """Every machine record of the tenant, the built-in ones (a list a test may extend) and the fleet's.

    Queries answer built-in records as they are and the fleet's as positions (`record` makes them), so a query
    matching 65,000 devices costs a list of integers, and only the page served is made into records.
    """

    def __init__(self, builtin: list[Json], fleet: Fleet) -> None:
        self.builtin = builtin
        self.fleet = fleet

    def record(self, key: Json | int) -> Json:
        return self.fleet.record(key) if isinstance(key, int) else key

    def by_id(self, machine_id: str) -> Json | None:
        found = next((m for m in self.builtin if m["id"] == machine_id), None)
        position = self.fleet.by_id(machine_id) if found is None else None
        return self.fleet.record(position) if position is not None else found

    def every(self) -> list[Json | int]:
        return [*self.builtin, *range(len(self.fleet))]

    def named(self, name: str) -> list[Json | int]:
        """Records whose computerDnsName is `name`, case-insensitively (a re-onboarded device has several)."""
        folded = name.casefold()
        return [*(m for m in self.builtin if str(m["computerDnsName"]).casefold() == folded), *self.fleet.named(name)]

    def prefixed(self, prefix: str) -> list[Json | int]:
        """Records whose computerDnsName starts with `prefix`, case-insensitively."""
        folded = prefix.casefold()
        found = [m for m in self.builtin if str(m["computerDnsName"]).casefold().startswith(folded)]
        return [*found, *self.fleet.prefixed(prefix)]

    def hunted(self, column: str, op: str, value: str) -> list[Json]:
        """The records an advanced-hunting `where` on DeviceId or DeviceName can match (the query filters on)."""
        if column == "DeviceId":
            found = self.by_id(value.lower())
            return [found] if found is not None else []
        keys = self.prefixed(value) if op == "startswith" else self.named(value)
        return [self.record(key) for key in keys]
