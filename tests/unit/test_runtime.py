"""The composition root's own decisions (the wiring itself is exercised by every integration test)."""

from __future__ import annotations

import threading
import time
from datetime import date

import pytest

from bot.alerts.mirror import GraphAlertSource
from bot.config import DataApi, load_settings
from bot.defender.simulator import SimulatedTenant
from bot.runtime import build_runtime, health_problems, retirement_warning


@pytest.mark.parametrize(
    ("api", "today", "says"),
    [
        (DataApi.MDE, date(2026, 12, 31), None),
        (DataApi.MDE, date(2027, 1, 1), "stops working on 01 Feb 2027"),
        (DataApi.MDE, date(2027, 2, 2), "stopped working on 01 Feb 2027"),
        (DataApi.GRAPH, date(2027, 2, 2), None),
    ],
)
def test_the_retirement_warning_starts_a_month_ahead_and_only_on_mde(
    api: DataApi, today: date, says: str | None
) -> None:
    warning = retirement_warning(api, today)
    if says is None:
        assert warning is None
    else:
        assert warning is not None and says in warning and "DEFENDER_API=graph" in warning


@pytest.mark.parametrize(
    ("shared_state", "failing", "problems"),
    [
        ("local", None, []),
        ("redis", None, []),
        ("redis-unavailable", None, ["shared-state-unavailable"]),
        ("local", "OperationalError", ["watch-store-failing"]),
        ("redis-unavailable", "RedisUnavailable", ["shared-state-unavailable", "watch-store-failing"]),
    ],
)
def test_health_names_each_dependency_that_is_down(shared_state: str, failing: str | None, problems: list[str]) -> None:
    assert health_problems(shared_state, failing) == problems


def _synced(source: GraphAlertSource) -> bool:
    """Wait (bounded) for the start-up sync to land; the test then asserts calls, not time."""
    deadline = time.monotonic() + 30.0
    while source.store.synced_at() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return source.store.synced_at() is not None


def _alert_pages(tenant: SimulatedTenant) -> int:
    return sum(1 for _, path in tenant.request_log if "alerts_v2" in path)


def test_a_serving_runtime_syncs_the_graph_mirror_at_start_up_and_its_first_lookup_calls_nothing() -> None:
    tenant = SimulatedTenant()
    settings = load_settings({"BOT_STATE_URL": "sqlite:///:memory:", "DEFENDER_API": "graph"})
    runtime = build_runtime(settings, tenant=tenant, warm_up=True)
    try:
        assert isinstance(runtime.client, GraphAlertSource)
        assert _synced(runtime.client)  # before any command
        calls = len(tenant.request_log)
        assert _alert_pages(tenant) == 1
        result = runtime.service.device_alerts(str(tenant.machines[0]["id"]))
        assert result.total > 0
        assert len(tenant.request_log) == calls  # answered from the mirror: no Graph call on the first lookup
    finally:
        runtime.close()
    assert not any(t.name == "graph-mirror-warm-up" and t.is_alive() for t in threading.enumerate())


def test_without_warm_up_the_runtime_calls_nothing_until_asked() -> None:
    """Tests that script Defender's answers build runtimes this way: their first fault meets their first lookup."""
    tenant = SimulatedTenant()
    settings = load_settings({"BOT_STATE_URL": "sqlite:///:memory:", "DEFENDER_API": "graph"})
    runtime = build_runtime(settings, tenant=tenant)
    try:
        assert tenant.request_log == []
        runtime.service.device_alerts(str(tenant.machines[0]["id"]))
        assert _alert_pages(tenant) == 1
    finally:
        runtime.close()
