"""Every benchmark in bench/ runs in its quick (CI smoke) size and reports figures of the right shape.

Nothing here asserts a time: these runs exist so the benchmarks never rot. The figures in docs/benchmarks.md
come from the full runs (the command is next to each table). Only counts that do not depend on the machine's
speed are compared: ours never makes more Defender calls than the naive baseline.
"""

from __future__ import annotations

import math
import shutil

import pytest

from bench import (
    ack_burst,
    enterprise_tenant,
    graph_mirror,
    incident_storm,
    render_cost,
    service_calls,
    slow_dependencies,
    tenant_scale,
    time_to_card,
    watch_scaling,
)


def test_ack_burst() -> None:
    results = ack_burst.main(["--quick"])
    ours, base = results["ours"], results["baseline"]
    for result in (ours, base):
        assert len(result.sent) == 30
        assert all(math.isfinite(s.latency) for s in result.sent)  # every command was answered
        assert result.cards + result.errors + result.busy == 30
        assert result.defender.alerts >= 1
    assert all(s.status == 200 for s in ours.sent)  # the baseline's may come too late for Bolt on a slow machine
    assert ours.defender.alerts <= 5  # one per device: single flight and the cache
    assert ours.defender.alerts <= base.defender.alerts


def test_incident_storm() -> None:
    results = incident_storm.main(["--quick"])
    ours, base, floor = results["ours"], results["baseline"], results["floor"]
    assert isinstance(ours, incident_storm.StormResult)
    assert isinstance(base, incident_storm.StormResult)
    assert floor == 3  # three devices, all asked about within one cache window
    assert len(ours.card_seconds) == len(base.card_seconds) == ours.commands == 12
    assert ours.errors == base.errors == 0
    assert floor <= ours.defender.alerts <= base.defender.alerts == 12
    graph = results["graph"]  # ours on DEFENDER_API=graph: the tenant's alert mirror
    assert isinstance(graph, incident_storm.StormResult)
    assert len(graph.card_seconds) == graph.commands == 12 and graph.errors == 0
    assert graph.defender.alerts == graph.defender.details == 0  # no Defender for Endpoint API call
    assert 1 <= graph.defender.graph_alerts <= base.defender.alerts


def test_time_to_card() -> None:
    (results,) = time_to_card.main(["--quick"]).values()
    for times in results.values():
        assert len(times.miss) == len(times.hit) == len(times.named) == 3
        assert all(t > 0 for t in times.miss + times.hit + times.named)
        assert times.defender is not None
    ours, base = results["ours"].defender, results["baseline"].defender
    assert ours is not None and base is not None
    assert ours.alerts == 6  # the second lookup of each device came from the cache; 3 more devices by name
    assert base.alerts == 9
    # By id ours asks for details beside the alerts; by name ours searches (`$filter`), the baseline gets the name.
    assert (ours.details, ours.other, base.details) == (3, 3, 3)
    graph = results["graph"].defender
    assert graph is not None and graph.alerts == 0 and graph.graph_alerts >= 1


def test_tenant_scale() -> None:
    (scale,) = tenant_scale.main(["--quick"])
    assert scale.cached == scale.names == scale.watches == scale.devices == 1000
    assert scale.cached_bytes > scale.name_bytes > 0 and scale.watch_disk_bytes > 0
    assert scale.card_violations == 0


def test_graph_mirror() -> None:
    (backfill,) = graph_mirror.main(["--quick"])
    assert backfill.alerts == backfill.mirrored == 1_000  # every alert of the backfill window reached the mirror
    assert backfill.devices_mirrored == backfill.devices > 0
    assert backfill.graph_calls >= 1 and backfill.reads >= 1 and backfill.throttled == 0
    assert backfill.wall > 0 and backfill.retained > 0 and backfill.peak >= backfill.retained


def test_service_calls() -> None:
    results = service_calls.main(["--quick"])
    assert results
    for ours, base in results.values():
        assert sum(ours.outcomes.values()) == sum(base.outcomes.values()) == ours.lookups
        assert ours.busiest_minute <= 100
        assert not ours.refused_calls
        assert len(ours.calls_made) <= len(base.calls_made) == base.lookups


def test_watch_scaling() -> None:
    runs = watch_scaling.main(["--quick"])
    assert [run.devices for run in runs] == [1, 10]
    for run in runs:
        assert run.defender_calls == [1] * run.intervals
        assert run.per_device_calls == run.devices


def test_render_cost() -> None:
    results = render_cost.main(["--quick"])
    render = results["render"]
    assert render.ours_violations == 0
    assert render.ours_bytes > 0 and render.base_bytes > 0
    memory = results["memory"]
    assert len(memory) == 4
    assert all(m["rss_kib"] > 0 for m in memory.values())
    assert memory["ours, 500 devices cached"]["cached"] == 500


def test_enterprise_tenant() -> None:
    results = enterprise_tenant.main(["--quick"])
    assert results["records"] == 10_000 + 10_000 // 20
    short, full = results["lookups"]
    assert (short["answer"], short["calls"], short["records"]) == ("5 suggestions", 2, 25)
    assert full["calls"] == 2  # the name's two records, then the live one's alerts


def test_slow_dependencies() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("needs the redis-server binary to pause a server")
    figures = slow_dependencies.main(["--quick"])
    assert set(figures) == {"redis_local_state_seconds", "usergroups_ack_seconds"}
    assert all(math.isfinite(seconds) and seconds > 0 for seconds in figures.values())
