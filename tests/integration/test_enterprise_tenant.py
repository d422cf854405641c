"""The bot in a 100,000-device tenant, end to end: signed Slack requests in, cards out, the simulator as Defender.

A short name that matches tens of thousands of devices costs one bounded search, and a re-onboarded device's
full hostname shows its live record's alerts, not those of the stale record it left behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from bot.defender.client import PREFIX_MATCHES
from bot.defender.simulator import SimulatedTenant
from bot.defender.simulator.fleet import FleetSpec
from bot.slack import actions
from tests.doubles.defender import shown_alerts
from tests.doubles.slack import Harness, all_text, buttons, harness, header

RE_ONBOARDED = "ws-000000.corp.contoso.com"  # two records: a stale one (listed first) and the live one


class RecordCountingTenant(SimulatedTenant):
    """The simulator, also noting how many records each answer carried: what crossed the wire."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.records_served: list[tuple[str, int]] = []

    def serve(self, request: httpx.Request) -> httpx.Response:
        response = super().serve(request)
        body = response.json()
        records = body.get("value") if isinstance(body, dict) else None
        self.records_served.append((request.url.path, len(records) if isinstance(records, list) else 1))
        return response


@pytest.fixture(scope="module")
def enterprise() -> RecordCountingTenant:
    """One 100,000-device tenant shared by the module's bots (each test looks only at its own requests)."""
    return RecordCountingTenant(calls_per_minute=10**6, calls_per_hour=10**6, fleet=FleetSpec(devices=100_000))


@pytest.fixture
def rig(enterprise: RecordCountingTenant, defender_api: str) -> Iterator[Harness]:
    yield from harness(tenant=enterprise, api=defender_api)


def live_record(tenant: SimulatedTenant, hostname: str) -> dict[str, Any]:
    records = tenant.directory.hunted("DeviceName", "=~", hostname)
    assert len(records) == 2, records
    return max(records, key=lambda m: datetime.fromisoformat(str(m["lastSeen"])[:26]))


@pytest.mark.defender_api("mde", reason="MDE's machines API; Graph's device search is an advanced hunting query")
def test_a_short_name_matching_65000_devices_costs_one_small_search(
    rig: Harness, enterprise: RecordCountingTenant
) -> None:
    asked = len(enterprise.request_log)
    rig.command("ws", "r1")
    [posted] = rig.standin.wait_for_posts(1)
    assert posted.payload["text"] == "No device in Defender matches 'ws'."
    assert all_text(posted.payload).count("`ws-") == 5  # five suggestions
    requests = enterprise.request_log[asked:]
    served = enterprise.records_served[asked:]
    assert [path for _, path in requests] == [
        "/api/machines?$filter=computerDnsName eq 'ws'",  # is there a device called just that? no
        f"/api/machines?$filter=startswith(computerDnsName,'ws')&$top={PREFIX_MATCHES}",
    ]
    assert [records for _, records in served] == [0, PREFIX_MATCHES]


def test_a_re_onboarded_devices_full_name_shows_the_live_records_alerts(
    rig: Harness, enterprise: RecordCountingTenant
) -> None:
    live = live_record(enterprise, RE_ONBOARDED)
    expected = shown_alerts(enterprise, live["id"], rig.api)
    stale_alerts = [a for a in enterprise.alerts if a["computerDnsName"] == RE_ONBOARDED and a not in expected]
    assert expected and stale_alerts  # both records have alerts: showing the wrong ones would be visible
    rig.command(RE_ONBOARDED, "r1")
    [posted] = rig.standin.wait_for_posts(1)
    assert header(posted) == f"{RE_ONBOARDED} · {len(expected)} alert{'' if len(expected) == 1 else 's'}"
    assert rig.bot.seal.open(buttons(posted)[actions.REFRESH]["value"]) == live["id"]
    text = all_text(posted.payload)
    assert any(a["id"] in text for a in expected)  # the card links its alerts, so the check below can fail
    assert all(a["id"] not in text for a in stale_alerts)
