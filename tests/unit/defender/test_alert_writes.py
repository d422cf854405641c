"""Alert writes through the real clients against the simulator's write APIs, which refuse what Defender does."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.defender.auth import StaticTokenProvider
from bot.defender.client import DefenderClient
from bot.defender.errors import DeviceNotFound, PermissionDenied, Throttled
from bot.defender.graph import GraphClient
from bot.defender.limits import Api
from bot.defender.models import AlertStatus, Classification
from bot.defender.simulator import GRAPH_SIMULATOR_BASE_URL, SIMULATOR_BASE_URL, SimulatedTenant, SimulatorTransport
from bot.defender.updates import DETERMINATIONS, AlertUpdate, determination
from bot.demo.clock import FakeClock

TOKEN = {"Authorization": "Bearer t"}
# One tenant for every example of the property test, without limits to run into.
SIMULATED = SimulatedTenant(calls_per_minute=10**6)
SIMULATED.writes.hour_limit = 10**6
SIMULATED.limits["graph-alert-comments"] = 10**6


def mde(tenant: SimulatedTenant) -> DefenderClient:
    return DefenderClient(SIMULATOR_BASE_URL, StaticTokenProvider("t"), transport=SimulatorTransport(tenant))


def graph(tenant: SimulatedTenant) -> GraphClient:
    return GraphClient(GRAPH_SIMULATOR_BASE_URL, StaticTokenProvider("t"), transport=SimulatorTransport(tenant))


def raw(tenant: SimulatedTenant, method: str, url: str, body: Any) -> httpx.Response:
    with httpx.Client(transport=SimulatorTransport(tenant)) as client:
        return client.request(method, url, json=body, headers=TOKEN)


@pytest.fixture
def tenant() -> SimulatedTenant:
    return SimulatedTenant()


def test_every_documented_pair_is_accepted_by_both_apis(tenant: SimulatedTenant) -> None:
    first, second = tenant.alerts[0]["id"], tenant.alerts[1]["id"]
    for classification, kinds in DETERMINATIONS.items():
        for kind in kinds:
            update = AlertUpdate("c", classification=classification, determination=kind)
            written = mde(tenant).update_alert(first, update)
            assert (written.classification, written.determination) == (classification, kind.mde)
            again = graph(tenant).update_alert(second, update)
            assert again is not None and again.classification is classification
            assert determination(classification, again.determination or "") == kind


@pytest.mark.parametrize(
    ("body", "api"),
    [
        ({"status": "Closed"}, "mde"),
        ({"status": "resolved"}, "mde"),  # Graph's spelling on Defender's API
        ({"classification": "TruePositive", "determination": "Clean"}, "mde"),  # not a pair
        ({"classification": "FalsePositive"}, "mde"),  # determination missing
        ({"severity": "High"}, "mde"),  # not updatable
        ({}, "mde"),
        ({"status": "Resolved"}, "graph"),  # Defender's spelling on Graph
        ({"classification": "truePositive", "determination": "notMalicious"}, "graph"),
        ({"assignedTo": 5}, "graph"),
        ({"title": "x"}, "graph"),
    ],
)
def test_bad_values_are_400(tenant: SimulatedTenant, body: dict[str, Any], api: str) -> None:
    alert_id = tenant.alerts[0]["id"]
    before = dict(tenant.alerts[0])
    url = (
        f"{SIMULATOR_BASE_URL}/api/alerts/{alert_id}"
        if api == "mde"
        else f"{GRAPH_SIMULATOR_BASE_URL}/v1.0/security/alerts_v2/{alert_id}"
    )
    assert raw(tenant, "PATCH", url, body).status_code == 400
    assert tenant.alerts[0] == before


def test_graph_comments_need_text(tenant: SimulatedTenant) -> None:
    url = f"{GRAPH_SIMULATOR_BASE_URL}/v1.0/security/alerts_v2/{tenant.alerts[0]['id']}/comments"
    assert raw(tenant, "POST", url, {"comment": "  "}).status_code == 400
    answer = raw(tenant, "POST", url, {"@odata.type": "microsoft.graph.security.alertComment", "comment": "hi"})
    assert answer.status_code == 200 and answer.json()["value"][-1]["comment"] == "hi"
    assert raw(tenant, "PATCH", url, {"comment": "hi"}).status_code == 405


def test_without_the_write_permission_each_api_answers_403_naming_it(tenant: SimulatedTenant) -> None:
    tenant.writes.roles.clear()
    update = AlertUpdate("c", status=AlertStatus.RESOLVED)
    with pytest.raises(PermissionDenied) as mde_refusal:
        mde(tenant).update_alert(tenant.alerts[0]["id"], update)
    assert mde_refusal.value.permission == "Alert.ReadWrite.All"
    with pytest.raises(PermissionDenied) as graph_refusal:
        graph(tenant).update_alert(tenant.alerts[0]["id"], update)
    assert graph_refusal.value.permission == "SecurityAlert.ReadWrite.All"
    assert tenant.writes.writes == []


def test_an_unknown_alert_is_404(tenant: SimulatedTenant) -> None:
    with pytest.raises(DeviceNotFound):
        mde(tenant).update_alert("da0_0", AlertUpdate("c", status=AlertStatus.RESOLVED))
    with pytest.raises(DeviceNotFound):
        graph(tenant).update_alert("da0_0", AlertUpdate("c", status=AlertStatus.RESOLVED))


def test_the_update_api_has_its_own_minute_and_hour_limits() -> None:
    clock = FakeClock()
    tenant = SimulatedTenant(clock=clock)
    alert_id = tenant.alerts[0]["id"]
    client = mde(tenant)
    for _ in range(100):
        client.update_alert(alert_id, AlertUpdate("c"))
    with pytest.raises(Throttled):
        mde(tenant).update_alert(alert_id, AlertUpdate("c"))
    assert raw(tenant, "GET", f"{SIMULATOR_BASE_URL}/api/alerts", None).status_code == 200  # reads count apart
    for _ in range(14):
        clock.advance(61)
        for _ in range(100):
            mde(tenant).update_alert(alert_id, AlertUpdate("c"))
    clock.advance(61)
    answer = raw(tenant, "PATCH", f"{SIMULATOR_BASE_URL}/api/alerts/{alert_id}", {"comment": "c"})
    assert answer.status_code == 429 and "per hour" in answer.json()["error"]["message"]


def test_a_write_is_never_retried(tenant: SimulatedTenant) -> None:
    tenant.fail_next(503)
    with pytest.raises(Exception, match="gave up after 1 attempts"):
        mde(tenant).update_alert(tenant.alerts[0]["id"], AlertUpdate("c", status=AlertStatus.RESOLVED))
    assert tenant.writes.writes == []


def test_update_rejects_pairs_and_statuses_defender_does_not_take() -> None:
    wrong = determination(Classification.TRUE_POSITIVE, "Malware")
    with pytest.raises(ValueError, match="does not go with"):
        AlertUpdate("c", classification=Classification.FALSE_POSITIVE, determination=wrong)
    with pytest.raises(ValueError, match="cannot be set"):
        AlertUpdate("c", status=AlertStatus.UNKNOWN)
    assert Api.ALERT_UPDATE.value == "alert-update"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(min_size=1, max_size=2000).filter(str.strip))
def test_any_comment_text_is_stored_as_sent_by_both_apis(text: str) -> None:
    tenant = SIMULATED
    alert_id = tenant.alerts[2]["id"]
    mde(tenant).update_alert(alert_id, AlertUpdate(text))
    assert tenant.alerts[2]["comments"][-1]["comment"] == text
    assert graph(tenant).update_alert(alert_id, AlertUpdate(text)) is None  # a comment alone
    assert tenant.alerts[2]["comments"][-1]["comment"] == text
