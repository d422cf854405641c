"""The Defender client against an httpx transport double: parsing, errors, retries, paging and the budget.

The same client over real sockets on 127.0.0.1 is in tests/integration/test_defender_client.py.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from bot.defender.client import PREFIX_MATCHES, DefenderClient
from bot.defender.errors import (
    AuthError,
    BadResponse,
    DefenderUnavailable,
    DeviceNotFound,
    InvalidDeviceReference,
    PermissionDenied,
    Throttled,
)
from bot.defender.limits import Api, BudgetExhausted, Priority
from bot.defender.models import Severity
from bot.defender.simulator import SIMULATOR_BASE_URL, SimulatedTenant, SimulatorTransport
from bot.demo.clock import FakeClock
from bot.state.budget import RateBudget
from tests.doubles.defender import CountingTokens, nth_machine_id

BASE = "https://api.test"
MID = nth_machine_id(7)
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """An httpx transport handler that answers from a script and records every request."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.script = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def error(status: int, code: str, message: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "target": "track-123"}}
    return httpx.Response(status, json=body, headers=headers)


def page(*records: dict[str, object], next_link: str | None = None) -> httpx.Response:
    body: dict[str, object] = {"@odata.context": f"{BASE}/api/$metadata#Alerts", "value": list(records)}
    if next_link:
        body["@odata.nextLink"] = next_link
    return httpx.Response(200, json=body)


def alert(n: int, **fields: object) -> dict[str, object]:
    return {"id": f"da{n}_1", "title": f"alert {n}", "severity": "High", "status": "New", "machineId": MID, **fields}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_client(
    handler: Handler, clock: FakeClock, *, tokens: CountingTokens | None = None, **kwargs: object
) -> DefenderClient:
    return DefenderClient(
        BASE,
        tokens or CountingTokens(),
        transport=httpx.MockTransport(handler),
        clock=clock,
        sleep=clock.sleep,
        **kwargs,  # type: ignore[arg-type]
    )


def test_device_alerts_are_parsed_and_the_request_is_authenticated(clock: FakeClock) -> None:
    recorder = Recorder(page(alert(1), alert(2, severity="Medium")))
    alerts = make_client(recorder, clock).get_device_alerts(MID)
    assert [a.id for a in alerts] == ["da1_1", "da2_1"]
    assert alerts[1].severity is Severity.MEDIUM
    request = recorder.requests[0]
    assert request.url.path == f"/api/machines/{MID}/alerts"
    assert request.headers["Authorization"] == "Bearer token-1"
    assert request.method == "GET"


def test_odata_filter_is_passed_through(clock: FakeClock) -> None:
    recorder = Recorder(page())
    make_client(recorder, clock).get_device_alerts(MID, "status ne 'Resolved'")
    assert recorder.requests[0].url.params["$filter"] == "status ne 'Resolved'"


def test_alerts_need_a_machine_id_not_a_hostname(clock: FakeClock) -> None:
    recorder = Recorder(page())
    with pytest.raises(InvalidDeviceReference):
        make_client(recorder, clock).get_device_alerts("ws-fin-014")
    assert recorder.requests == []


def test_403_keeps_the_required_roles_text(clock: FakeClock) -> None:
    message = "The application does not have any of the required application roles: Alert.Read.All, Alert.ReadWrite.All"
    recorder = Recorder(error(403, "Forbidden", message))
    with pytest.raises(PermissionDenied) as caught:
        make_client(recorder, clock).get_device_alerts(MID)
    assert "Alert.Read.All" in caught.value.message
    assert caught.value.target == "track-123"


def test_404_is_device_not_found_with_the_tracking_id(clock: FakeClock) -> None:
    with pytest.raises(DeviceNotFound) as caught:
        make_client(Recorder(error(404, "ResourceNotFound")), clock).get_device_alerts(MID)
    assert caught.value.reference == MID
    assert caught.value.target == "track-123"


def test_429_is_not_retried_and_blocks_calls_until_retry_after(clock: FakeClock) -> None:
    recorder = Recorder(error(429, "TooManyRequests", headers={"Retry-After": "30"}), page(alert(1)))
    client = make_client(recorder, clock)
    with pytest.raises(Throttled) as caught:
        client.get_device_alerts(MID)
    assert caught.value.retry_after == 30
    assert len(recorder.requests) == 1
    clock.advance(20)
    with pytest.raises(Throttled) as again:
        client.get_device_alerts(MID)
    assert again.value.retry_after == pytest.approx(10)
    assert len(recorder.requests) == 1  # no call before Retry-After has passed
    clock.advance(10.5)
    assert [a.id for a in client.get_device_alerts(MID)] == ["da1_1"]
    assert len(recorder.requests) == 2


def test_a_429_blocks_only_the_api_that_was_throttled(clock: FakeClock) -> None:
    machine = {"id": MID, "computerDnsName": "ws-1"}
    recorder = Recorder(error(429, "TooManyRequests", headers={"Retry-After": "30"}), httpx.Response(200, json=machine))
    client = make_client(recorder, clock)
    with pytest.raises(Throttled):
        client.get_device_alerts(MID)
    assert client.get_machine(MID).computer_dns_name == "ws-1"


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, 60.0), ("garbage", 60.0), ("0", 1.0), ("999999", 3600.0)],
)
def test_retry_after_odd_values_are_made_safe(clock: FakeClock, header: str | None, expected: float) -> None:
    headers = {"Retry-After": header} if header is not None else None
    with pytest.raises(Throttled) as caught:
        make_client(Recorder(error(429, "TooManyRequests", headers=headers)), clock).get_device_alerts(MID)
    assert caught.value.retry_after == expected


def test_retry_after_as_an_http_date(clock: FakeClock) -> None:
    moment = datetime.fromtimestamp(datetime.now(UTC).timestamp() + 120, UTC)
    headers = {"Retry-After": format_datetime(moment, usegmt=True)}
    with pytest.raises(Throttled) as caught:
        make_client(Recorder(error(429, "TooManyRequests", headers=headers)), clock).get_device_alerts(MID)
    assert 110 <= caught.value.retry_after <= 121


def test_5xx_is_retried_with_backoff_then_succeeds(clock: FakeClock) -> None:
    recorder = Recorder(error(500, "InternalServerError"), error(503, "ServiceUnavailable"), page(alert(1)))
    start = clock()
    alerts = make_client(recorder, clock).get_device_alerts(MID)
    assert [a.id for a in alerts] == ["da1_1"]
    assert len(recorder.requests) == 3
    # Two jittered waits: 0.5 s x [0.5, 1.5] then 1 s x [0.5, 1.5].
    assert 0.75 <= clock() - start <= 2.25


def test_5xx_gives_up_after_the_attempt_limit(clock: FakeClock) -> None:
    recorder = Recorder(error(500, "InternalServerError"))
    with pytest.raises(DefenderUnavailable, match="after 3 attempts"):
        make_client(recorder, clock).get_device_alerts(MID)
    assert len(recorder.requests) == 3


def test_retries_stop_when_the_time_budget_is_spent(clock: FakeClock) -> None:
    recorder = Recorder(error(502, "BadGateway"))
    client = make_client(recorder, clock, max_attempts=50, retry_time_budget=5.0, backoff_base=1.0)
    with pytest.raises(DefenderUnavailable):
        client.get_device_alerts(MID)
    assert 2 <= len(recorder.requests) <= 4
    assert clock() - 1000.0 <= 5.0


def test_connection_errors_are_retried(clock: FakeClock) -> None:
    recorder = Recorder(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), page(alert(1)))
    assert len(make_client(recorder, clock).get_device_alerts(MID)) == 1
    assert len(recorder.requests) == 3


def test_401_drops_the_token_and_retries_once(clock: FakeClock) -> None:
    tokens = CountingTokens()
    recorder = Recorder(error(401, "Unauthorized"), page(alert(1)))
    assert len(make_client(recorder, clock, tokens=tokens).get_device_alerts(MID)) == 1
    assert tokens.invalidated == 1
    assert [r.headers["Authorization"] for r in recorder.requests] == ["Bearer token-1", "Bearer token-2"]


def test_401_twice_is_an_auth_error(clock: FakeClock) -> None:
    tokens = CountingTokens()
    recorder = Recorder(error(401, "Unauthorized"))
    with pytest.raises(AuthError):
        make_client(recorder, clock, tokens=tokens).get_device_alerts(MID)
    assert len(recorder.requests) == 2
    assert tokens.invalidated == 1


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"{not json"),
        httpx.Response(200, content=b'{"value": [{"id": "a"}'),  # truncated body
        httpx.Response(200, json=["a", "list"]),
        httpx.Response(200, json={"no": "value"}),
        httpx.Response(200, json={"value": "not a list"}),
        httpx.Response(400, json={"error": {"code": "InvalidInput", "message": "bad filter"}}),
        httpx.Response(418, text="teapot"),
    ],
)
def test_malformed_answers_are_bad_response(clock: FakeClock, response: httpx.Response) -> None:
    with pytest.raises(BadResponse):
        make_client(Recorder(response), clock).get_device_alerts(MID)


def test_records_without_an_id_are_skipped_and_logged(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        alerts = make_client(Recorder(page(alert(1), {"title": "no id"}, "junk")), clock).get_device_alerts(MID)
    assert [a.id for a in alerts] == ["da1_1"]
    assert sum("skipped a record" in r.getMessage() for r in caplog.records) == 2


def test_next_links_are_followed_on_the_same_host(clock: FakeClock) -> None:
    recorder = Recorder(
        page(alert(1), next_link=f"{BASE}/api/machines/{MID}/alerts?$skiptoken=1"),
        page(alert(2), next_link=f"{BASE}/api/machines/{MID}/alerts?$skiptoken=2"),
        page(alert(3)),
    )
    alerts = make_client(recorder, clock).get_device_alerts(MID)
    assert [a.id for a in alerts] == ["da1_1", "da2_1", "da3_1"]
    assert [r.url.params.get("$skiptoken") for r in recorder.requests] == [None, "1", "2"]


def test_a_next_link_to_another_host_is_not_followed(clock: FakeClock) -> None:
    recorder = Recorder(page(alert(1), next_link="https://evil.example/steal"), page(alert(2)))
    alerts = make_client(recorder, clock).get_device_alerts(MID)
    assert [a.id for a in alerts] == ["da1_1"]
    assert [r.url.host for r in recorder.requests] == ["api.test"]  # the token never left for evil.example


def test_paging_is_bounded(clock: FakeClock) -> None:
    recorder = Recorder(page(alert(1), next_link=f"{BASE}/api/machines/{MID}/alerts?$skiptoken=again"))
    alerts = make_client(recorder, clock, max_pages=4).get_device_alerts(MID)
    assert len(recorder.requests) == 4
    assert len(alerts) == 4


def test_every_attempt_and_page_is_charged_to_the_budget(clock: FakeClock) -> None:
    budget = RateBudget(per_minute=100, per_hour=1500, clock=clock)
    recorder = Recorder(
        error(500, "InternalServerError"),
        page(alert(1), next_link=f"{BASE}/api/machines/{MID}/alerts?$skiptoken=1"),
        page(alert(2)),
    )
    make_client(recorder, clock, gate=budget).get_device_alerts(MID)
    assert budget.usage(Api.MACHINE_ALERTS).used_last_minute == 3 == len(recorder.requests)


def test_no_request_is_made_when_the_budget_is_exhausted(clock: FakeClock) -> None:
    budget = RateBudget(per_minute=1, per_hour=10, clock=clock)
    recorder = Recorder(page(alert(1)))
    client = make_client(recorder, clock, gate=budget)
    client.get_device_alerts(MID)
    with pytest.raises(BudgetExhausted) as caught:
        client.get_device_alerts(MID)
    assert caught.value.retry_after == pytest.approx(60)
    assert len(recorder.requests) == 1


def test_background_priority_reaches_the_budget(clock: FakeClock) -> None:
    budget = RateBudget(per_minute=100, per_hour=1500, background_minute_share=0.0, clock=clock)
    recorder = Recorder(page())
    client = make_client(recorder, clock, gate=budget)
    with pytest.raises(BudgetExhausted):
        client.list_alerts_updated_since(datetime(2026, 11, 26, 10, tzinfo=UTC))
    client.list_alerts_updated_since(datetime(2026, 11, 26, 10, tzinfo=UTC), priority=Priority.INTERACTIVE)
    assert len(recorder.requests) == 1


def test_machine_lookups_and_filters(clock: FakeClock) -> None:
    machine = {"id": MID.upper(), "computerDnsName": "ws-1.contoso.local", "lastSeen": "2026-11-26T10:00:00Z"}
    recorder = Recorder(httpx.Response(200, json=machine), page(machine), page(machine), page(machine))
    client = make_client(recorder, clock)
    assert client.get_machine(MID.upper()).id == MID
    assert recorder.requests[0].url.path == f"/api/machines/{MID}"
    # A name is never put in the path: GET /api/machines/{name} returns any of a re-onboarded device's records.
    assert client.get_machine("WS-1.contoso.local").id == MID
    assert recorder.requests[1].url.path == "/api/machines"
    assert recorder.requests[1].url.params["$filter"] == "computerDnsName eq 'ws-1.contoso.local'"
    assert [m.id for m in client.find_machines("ws-1")] == [MID]
    assert dict(recorder.requests[2].url.params) == {"$filter": "computerDnsName eq 'ws-1'"}
    client.find_machines("ws-1", prefix=True)
    prefix_params = recorder.requests[3].url.params
    assert dict(prefix_params) == {"$filter": "startswith(computerDnsName,'ws-1')", "$top": str(PREFIX_MATCHES)}


def test_a_name_resolves_to_its_record_seen_last(clock: FakeClock) -> None:
    def record(n: int, seen: str, **fields: object) -> dict[str, object]:
        return {"id": nth_machine_id(n), "computerDnsName": "lt-9.contoso.local", "lastSeen": seen, **fields}

    stale = record(1, "2026-10-01T08:00:00Z", healthStatus="Inactive")
    live = record(2, "2026-11-26T10:00:00.5Z")
    older = record(3, "2026-11-26T10:00:00.4999999Z")
    recorder = Recorder(page(stale, live, older), page(record(4, "2026-01-01T00:00:00Z", lastSeen=None), stale), page())
    client = make_client(recorder, clock)
    assert client.get_machine("lt-9.contoso.local").id == nth_machine_id(2)
    assert client.get_machine("lt-9.contoso.local").id == nth_machine_id(1)  # a record never seen loses
    with pytest.raises(DeviceNotFound) as missing:
        client.get_machine("lt-9.contoso.local")
    assert missing.value.reference == "lt-9.contoso.local"


def test_alerts_updated_since_uses_the_documented_filter(clock: FakeClock) -> None:
    recorder = Recorder(page(alert(1)))
    make_client(recorder, clock).list_alerts_updated_since(datetime(2026, 11, 26, 10, 0, 5, 123, tzinfo=UTC))
    params = recorder.requests[0].url.params
    assert recorder.requests[0].url.path == "/api/alerts"
    assert params["$filter"] == "lastUpdateTime ge 2026-11-26T10:00:05Z"
    assert params["$top"] == "10000"


@pytest.mark.parametrize(("defender_ahead", "said"), [(240, "behind"), (-240, "ahead of"), (20, None)])
def test_a_host_clock_minutes_off_defenders_is_said_once_with_the_figure(
    caplog: pytest.LogCaptureFixture, defender_ahead: int, said: str | None
) -> None:
    """Defender's `Date` header shows this host's clock off either way (a clock ahead is invisible in alert
    timestamps); said once however many answers show it, and not at all within a minute."""
    tenant = SimulatedTenant(now=lambda: datetime.now(UTC) + timedelta(seconds=defender_ahead))
    client = DefenderClient(SIMULATOR_BASE_URL, CountingTokens(), transport=SimulatorTransport(tenant))
    with caplog.at_level(logging.WARNING, logger="bot.defender.skew"):
        for _ in range(3):
            client.list_alerts_updated_since(datetime.now(UTC) - timedelta(hours=1))
    told = [r.getMessage() for r in caplog.records if r.name == "bot.defender.skew"]
    if said is None:
        assert told == []
        return
    [message] = told  # the Date header has whole seconds: 239 to 241
    assert re.fullmatch(rf"this host's clock is 2(39|40|41) s {said} Defender's \(its Date header\): .*NTP\)", message)
