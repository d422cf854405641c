"""Triage writes below Slack: what is already done, the comment that names who, and one write under a burst."""

from __future__ import annotations

import threading

import pytest

from bot.alerts.scope import EVERY_DEVICE
from bot.alerts.service import AlertService
from bot.alerts.triage import Actor, Outcome, Triage, TriageRequest, Verb, already_done, update_for
from bot.defender.auth import StaticTokenProvider
from bot.defender.client import DefenderClient
from bot.defender.errors import DefenderUnavailable
from bot.defender.limits import Api
from bot.defender.models import AlertStatus, Classification, parse_alert
from bot.defender.simulator import SIMULATOR_BASE_URL, SimulatedTenant, SimulatorTransport
from bot.defender.updates import determination
from bot.demo.clock import FakeClock
from bot.state.budget import RateBudget
from bot.state.dedupe import EventDeduper

ACTOR = Actor("U0ALICE", "C0INCIDENT", "alice@contoso.com")


def rig() -> tuple[SimulatedTenant, Triage, RateBudget, dict[str, str]]:
    tenant = SimulatedTenant()
    budget = RateBudget()
    client = DefenderClient(
        SIMULATOR_BASE_URL, StaticTokenProvider("t"), transport=SimulatorTransport(tenant), gate=budget
    )
    alert = next(a for a in tenant.alerts if a["status"] == "New")
    return tenant, Triage(AlertService(client), client, EventDeduper()), budget, alert


def test_a_burst_of_the_same_change_writes_once() -> None:
    tenant, triage, budget, alert = rig()
    request = TriageRequest(Verb.STATUS, alert["machineId"], alert["id"], status=AlertStatus.RESOLVED)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(triage.apply(request, ACTOR, EVERY_DEVICE))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.outcome.value for r in results) == ["unchanged"] * 7 + ["written"]
    assert len(tenant.writes.writes) == 1
    assert budget.usage(Api.ALERT_UPDATE).used_last_minute == 1  # writes count against the update API's own budget


def test_the_written_state_is_what_the_next_read_sees() -> None:
    tenant, triage, _, alert = rig()
    kind = determination(Classification.TRUE_POSITIVE, "Malware")
    request = TriageRequest(
        Verb.CLASSIFY, alert["machineId"], alert["id"], classification=Classification.TRUE_POSITIVE, determination=kind
    )
    result = triage.apply(request, ACTOR, EVERY_DEVICE)
    assert result.outcome is Outcome.WRITTEN and result.change == "classification: unclassified -> TruePositive/Malware"
    current = triage.current(request, EVERY_DEVICE)
    assert current is not None and already_done(current, request)
    assert triage.apply(request, ACTOR, EVERY_DEVICE).outcome is Outcome.UNCHANGED
    assert len(tenant.writes.writes) == 1


def test_an_alert_gone_from_the_device_is_not_written() -> None:
    tenant, triage, _, alert = rig()
    request = TriageRequest(Verb.ASSIGN, alert["machineId"], "da0_0", assignee="alice@contoso.com")
    assert triage.apply(request, ACTOR, EVERY_DEVICE).outcome is Outcome.GONE
    assert tenant.writes.writes == []


def test_the_comment_names_who_and_where_and_keeps_the_persons_words() -> None:
    request = TriageRequest(Verb.STATUS, "m", "a", status=AlertStatus.RESOLVED, comment="  contained  ")
    update = update_for(request, ACTOR)
    assert update.comment == (
        "Status set to Resolved by alice@contoso.com (Slack user U0ALICE) in channel C0INCIDENT, via device-alerts: "
        "contained"
    )
    without_email = update_for(request, Actor("U0BOB", ""))
    assert "by Slack user U0BOB in a direct message" in without_email.comment


def test_already_done_compares_either_spelling_of_a_determination() -> None:
    alert = parse_alert(
        {"id": "a", "status": "Resolved", "classification": "FalsePositive", "determination": "NotMalicious"}
    )
    kind = determination(Classification.FALSE_POSITIVE, "Clean")
    request = TriageRequest(Verb.CLASSIFY, "m", "a", classification=Classification.FALSE_POSITIVE, determination=kind)
    assert already_done(alert, request)
    assert already_done(alert, TriageRequest(Verb.STATUS, "m", "a", status=AlertStatus.RESOLVED))
    assert not already_done(alert, TriageRequest(Verb.COMMENT, "m", "a", comment="x"))


def test_a_write_shows_in_the_cached_list_without_making_the_other_alerts_look_fresher() -> None:
    clock = FakeClock()
    tenant = SimulatedTenant(now=clock.wall, clock=clock)
    client = DefenderClient(SIMULATOR_BASE_URL, StaticTokenProvider("t"), transport=SimulatorTransport(tenant))
    service = AlertService(client, clock=clock, now=clock.wall)
    triage = Triage(service, client, EventDeduper())
    alert = next(a for a in tenant.alerts if a["status"] == "New")
    looked_up = service.device_alerts(alert["machineId"])
    clock.advance(4)  # younger than the refresh floor: the write's own read reuses this list
    request = TriageRequest(Verb.STATUS, alert["machineId"], alert["id"], status=AlertStatus.RESOLVED)
    assert triage.apply(request, ACTOR, EVERY_DEVICE).outcome is Outcome.WRITTEN
    after = service.device_alerts(alert["machineId"])
    assert after.from_cache and after.fetched_at == looked_up.fetched_at  # as old as the list, not as the write
    assert next(a for a in after.alerts if a.id == alert["id"]).status is AlertStatus.RESOLVED


def test_a_comment_whose_write_failed_is_written_when_asked_again() -> None:
    tenant, triage, _, alert = rig()
    request = TriageRequest(Verb.COMMENT, alert["machineId"], alert["id"], comment="contained by the SOC")
    triage.current(request, EVERY_DEVICE)  # the list is read before the fault: only the write fails
    tenant.fail_next(500, path=f"/api/alerts/{alert['id']}")
    with pytest.raises(DefenderUnavailable):
        triage.apply(request, ACTOR, EVERY_DEVICE)
    assert tenant.writes.writes == []
    assert triage.apply(request, ACTOR, EVERY_DEVICE).outcome is Outcome.WRITTEN  # not "you just added that"
    assert triage.apply(request, ACTOR, EVERY_DEVICE).outcome is Outcome.UNCHANGED  # and then only once
    assert len(tenant.writes.writes) == 1
