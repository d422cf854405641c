"""Defender's rate limits as the client sees them: which API a call counts against, its priority, the gate.

The Defender for Endpoint API allows 100 calls per minute and 1,500 per hour per app + tenant, counted
separately per API; those are `BudgetCaps.per_minute` / `per_hour` (configurable). The Microsoft Graph
security APIs have limits of their own (`DEFAULT_API_LIMITS`, overridable per API through `BudgetCaps.per_api`).
The client asks a `Budget` before every call (first attempts, retries and extra pages alike); a call that
would break a window is never made and raises `BudgetExhausted`, a `DefenderError` like every other reason
a lookup produced no data. The windows themselves are state: `bot.state.budget` keeps them in the process,
`bot.state.redis.budget` in Redis for every process.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from bot.defender.errors import DefenderError

MINUTE = 60.0
HOUR = 3600.0


class Api(enum.Enum):
    """Defender APIs with their own rate-limit counters."""

    MACHINE_ALERTS = "machine-alerts"  # GET /api/machines/{id}/alerts
    MACHINE = "machine"  # GET /api/machines/{id}
    MACHINES = "machines"  # GET /api/machines
    ALERTS = "alerts"  # GET /api/alerts
    GRAPH_ALERTS = "graph-alerts"  # GET /v1.0/security/alerts_v2 (Microsoft Graph)
    GRAPH_HUNTING = "graph-hunting"  # POST /v1.0/security/runHuntingQuery (Microsoft Graph)
    ALERT_UPDATE = "alert-update"  # PATCH /api/alerts/{id}: its own 100/min, 1,500/h
    GRAPH_ALERT_UPDATE = "graph-alert-update"  # PATCH alerts_v2/{id} and POST alerts_v2/{id}/comments (Graph)


class Priority(enum.Enum):
    INTERACTIVE = "interactive"
    BACKGROUND = "background"


class BudgetExhausted(DefenderError):
    """A call was not made because it would exceed the rate budget."""

    def __init__(self, api: Api, retry_after: float) -> None:
        super().__init__(f"Defender call budget for {api.value} used up; next slot in {retry_after:.0f} s")
        self.api = api
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class ApiLimits:
    """Calls one API allows per minute and per hour."""

    per_minute: int
    per_hour: int

    def __post_init__(self) -> None:
        if self.per_minute < 1 or self.per_hour < 1:
            raise ValueError("budget limits must be at least 1")


# The Graph APIs' own limits; every API not listed takes `BudgetCaps.per_minute` / `per_hour` (the MDE limits).
# Graph alerts_v2: 150 requests a minute per app and tenant; Microsoft documents no hourly limit. The hour cap
# of 3,000 (20 full minutes) is ours: ample for a tenant mirror polling every 30 s (a few pages each, ~120-360
# calls an hour) and for a backfill of a few hundred thousand alerts, yet it stops a runaway loop from holding
# the API at its limit all hour, starving lookups. Hunting: 45 calls a minute and 1,500 an hour per tenant
# (Microsoft's documented quotas for runHuntingQuery).
DEFAULT_API_LIMITS: Mapping[Api, ApiLimits] = {
    Api.GRAPH_ALERTS: ApiLimits(150, 3000),
    Api.GRAPH_HUNTING: ApiLimits(45, 1500),
    # Graph counts alert writes with the security API's 150 a minute; the hour cap is ours, as for reads.
    Api.GRAPH_ALERT_UPDATE: ApiLimits(150, 3000),
}


@dataclass(frozen=True, slots=True)
class BudgetCaps:
    """The limits per window and the share of each that background work (watch polling) may use.

    `per_minute` / `per_hour` hold for every API without an entry in `per_api` (the Defender for Endpoint
    APIs). `per_api` overrides the limits of single APIs on top of `DEFAULT_API_LIMITS` (the Graph APIs'),
    so overriding one API never drops another's default. Background work may only fill part of each window,
    so people in an incident are never starved by it.
    """

    per_minute: int = 100
    per_hour: int = 1500
    background_minute_share: float = 0.5
    background_hour_share: float = 0.8
    # Left out of the hash (a mapping has none); kept read-only so equal caps stay equal.
    per_api: Mapping[Api, ApiLimits] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_api", MappingProxyType({**DEFAULT_API_LIMITS, **self.per_api}))
        if self.per_minute < 1 or self.per_hour < 1:
            raise ValueError("budget limits must be at least 1")
        if not (0.0 <= self.background_minute_share <= 1.0 and 0.0 <= self.background_hour_share <= 1.0):
            raise ValueError("background shares must be between 0 and 1")

    def limits(self, api: Api) -> ApiLimits:
        """The interactive limits of `api`: its own entry, else the shared per-minute / per-hour limits."""
        return self.per_api.get(api) or ApiLimits(self.per_minute, self.per_hour)

    def caps(self, priority: Priority, api: Api | None = None) -> tuple[int, int]:
        """(minute cap, hour cap) for calls of `priority` to `api` (None: an API without limits of its own)."""
        limits = self.limits(api) if api is not None else ApiLimits(self.per_minute, self.per_hour)
        if priority is Priority.INTERACTIVE:
            return limits.per_minute, limits.per_hour
        return int(limits.per_minute * self.background_minute_share), int(limits.per_hour * self.background_hour_share)

    def divided(self, processes: int) -> BudgetCaps:
        """This process's share when `processes` share the tenant's limits without a common count."""
        return BudgetCaps(
            max(1, self.per_minute // processes),
            max(1, self.per_hour // processes),
            self.background_minute_share,
            self.background_hour_share,
            {
                api: ApiLimits(max(1, limits.per_minute // processes), max(1, limits.per_hour // processes))
                for api, limits in self.per_api.items()
            },
        )


@dataclass(frozen=True, slots=True)
class WindowUsage:
    api: Api
    used_last_minute: int
    used_last_hour: int
    minute_limit: int
    hour_limit: int

    @property
    def minute_left(self) -> int:
        return max(0, self.minute_limit - self.used_last_minute)

    @property
    def hour_left(self) -> int:
        return max(0, self.hour_limit - self.used_last_hour)


def hour_share_left(caps: BudgetCaps, usage: WindowUsage, priority: Priority) -> float:
    """The share (0-1) of the hour's cap for calls of `priority` to `usage.api` that is still free.

    The cap is the one `usage` was counted against (a process's own share while a shared budget is away).
    """
    share = 1.0 if priority is Priority.INTERACTIVE else caps.background_hour_share
    hour_cap = int(usage.hour_limit * share)
    return max(0, hour_cap - usage.used_last_hour) / hour_cap if hour_cap else 0.0


class Budget(Protocol):
    """What the client (`acquire`, before every call), /healthz (`usage`) and the alert cache's pacing
    (`hour_share_left`) need of a rate budget."""

    per_minute: int
    per_hour: int

    def acquire(self, api: Api, priority: Priority = ...) -> None: ...
    def usage(self, api: Api) -> WindowUsage: ...
    def hour_share_left(self, api: Api, priority: Priority = ...) -> float: ...


@runtime_checkable
class SharedThrottle(Protocol):
    """A gate that also remembers Defender's 429 `Retry-After` for every process (the Redis budget).

    The client records each 429 here as well as in itself, and asks before each call; the in-process
    budget is not one, so a single process keeps the client's own memory only.
    """

    def block(self, api: Api, seconds: float) -> None: ...
    def blocked_for(self, api: Api) -> float: ...
