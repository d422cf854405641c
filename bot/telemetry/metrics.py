"""Prometheus metrics, served at `GET /metrics` in the text exposition format.

Event counts (Defender requests, lookups by data source, Slack API errors, follow-ups posted) are counters
incremented where the event happens. Levels (budget left, watches, pending follow-ups, cached devices) are
read from the live objects at scrape time by `StateCollector`, so they are never stale and cost nothing
between scrapes. Each bot gets its own registry; the counters are shared by every bot in a process (one in
production, several in tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

DEFENDER_REQUESTS = Counter(
    "device_alerts_defender_requests",
    "Requests sent to the Defender API, by endpoint and outcome (retries and extra pages count; a 404 is ok).",
    ["endpoint", "outcome"],
    registry=None,
)
LOOKUPS = Counter(
    "device_alerts_lookups",
    "Device lookups answered, by where the data came from: fresh (a Defender call), cache, stale, or failed.",
    ["source"],
    registry=None,
)
ACK_SECONDS = Histogram(
    "device_alerts_ack_seconds",
    "Time from receiving a Slack request to answering it (Slack allows 3 s).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0),
    registry=None,
)
SLACK_ERRORS = Counter(
    "device_alerts_slack_api_errors",
    "Slack Web API calls and response_url posts that failed, by method and error.",
    ["method", "error"],
    registry=None,
)
FOLLOWUPS_POSTED = Counter(
    "device_alerts_followups_posted", "Watch follow-ups posted in a card's thread.", registry=None
)
_SHARED: tuple[Collector, ...] = (DEFENDER_REQUESTS, LOOKUPS, ACK_SECONDS, SLACK_ERRORS, FOLLOWUPS_POSTED)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def defender_outcome(status: int | None) -> str:
    """A small, fixed set of outcome labels (a status per label would make the series unbounded).

    A 404 ("no such device") is an answer like a 200 and counted as `ok`: `/metrics` needs no sign-in, and a
    separate count would tell anyone who can read it whether the name a member just asked about exists.
    """
    if status is None:
        return "network_error"
    if status < 400 or status == 404:
        return "ok"
    return {401: "unauthorized", 403: "forbidden", 429: "throttled"}.get(
        status, "server_error" if status >= 500 else "client_error"
    )


@dataclass(frozen=True, slots=True)
class State:
    """Where the scrape-time levels come from."""

    budget_left: Callable[[], Iterable[tuple[str, int, int]]]  # (endpoint, minute left, hour left) per API
    cached_devices: Callable[[], int]
    live_watches: Callable[[], int]
    pending_followups: Callable[[], int]
    lookups_in_use: Callable[[], int]


class StateCollector(Collector):
    def __init__(self, state: State) -> None:
        self._state = state

    def collect(self) -> Iterable[Metric]:
        left = GaugeMetricFamily(
            "device_alerts_budget_remaining",
            "Defender calls the bot may still make in the sliding window, per API.",
            labels=["endpoint", "window"],
        )
        for endpoint, minute_left, hour_left in self._state.budget_left():
            left.add_metric([endpoint, "minute"], minute_left)
            left.add_metric([endpoint, "hour"], hour_left)
        yield left
        levels: Mapping[str, tuple[str, Callable[[], int]]] = {
            "device_alerts_cached_devices": ("Devices whose alerts are cached.", self._state.cached_devices),
            "device_alerts_watches_active": ("Watches that are live or paused.", self._state.live_watches),
            "device_alerts_followups_pending": (
                "Follow-ups found but not yet posted.",
                self._state.pending_followups,
            ),
            "device_alerts_lookups_in_use": ("Lookups running or waiting on the pool.", self._state.lookups_in_use),
        }
        for name, (documentation, read) in levels.items():
            yield GaugeMetricFamily(name, documentation, value=read())


def bot_registry(state: State) -> CollectorRegistry:
    found = CollectorRegistry(auto_describe=True)
    for collector in (*_SHARED, StateCollector(state)):
        found.register(collector)
    return found


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
