"""The watch poller against the simulator and the Slack stand-in: one reply per check that found something.

Each rig (`tests.doubles.watch.Rig`) is one "process": a SQLite store on a file, an alert service and Defender
client on a fake clock (the simulator's wall clock follows it), and `SlackWatches` posting to a `SlackStandIn` as
in production. Crashes and restarts are in tests/system/test_watch_crash.py.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from slack_bolt.request import BoltRequest

from bench.watch_scaling import run_scaling
from bot.alerts.query import parse_query
from bot.config import SlackMode, load_settings, load_slack_settings
from bot.defender.limits import Api, ApiLimits
from bot.defender.simulator import SimulatedTenant
from bot.demo.clock import START, FakeClock
from bot.demo.slack_requests import SlackRequests
from bot.demo.standin import Posted, SlackStandIn
from bot.runtime import build_runtime, build_slack_bot
from bot.state.budget import RateBudget
from bot.watch import poller as poller_module
from tests.doubles import secrets as fake_secrets
from tests.doubles.defender import graph_since, kind_of, machine_id
from tests.doubles.slack import close_soon, reference, text_of
from tests.doubles.watch import CHANNEL, FIN_014, FIN_015, INTERVAL, Rig


def wait_for(found: Callable[[], list[Posted]], timeout: float = 5.0) -> list[Posted]:
    """Poll until `found()` is not empty (posts from other threads)."""
    deadline = time.monotonic() + timeout
    while not (result := found()):
        if time.monotonic() > deadline:
            raise TimeoutError("nothing arrived")
        time.sleep(0.01)
    return result


@pytest.fixture
def rig(tmp_path: Path, defender_api: str) -> Iterator[Rig]:
    made = Rig.build(tmp_path / "watches.db", api=defender_api)
    try:
        yield made
    finally:
        made.close()
        close_soon(made.standin)


def post_calls(rig: Rig) -> int:
    return sum(method == "chat.postMessage" for method, _ in rig.standin.calls)


# -- what is reported ------------------------------------------------------------------------------------------


def test_a_new_alert_is_one_reply_in_the_thread(rig: Rig) -> None:
    watch = rig.watch()
    assert rig.followups() == []
    alert_id = rig.add_alert(title="Ransomware behavior detected")
    report = rig.check()
    assert (report.ran, report.defender_calls, report.changes, report.posted, report.pending) == (True, 1, 1, 1, 0)
    [reply] = rig.followups()
    assert (reply.payload["channel"], reply.payload["thread_ts"]) == (CHANNEL, watch.root_ts)
    assert reply.payload["text"] == f"{FIN_014}: 1 change"
    assert "*New alert* · High" in text_of(reply)
    assert "Ransomware behavior detected" in text_of(reply)
    assert alert_id in text_of(reply)  # the line links to the alert
    assert reply.payload["metadata"]["event_type"] == "device_alerts_followup"
    assert rig.followup_counts() == Counter({f"{watch.id}:1": 1})


def test_each_check_with_a_change_is_one_more_reply(rig: Rig) -> None:
    rig.watch()
    alert_id = rig.add_alert()
    rig.check()
    rig.tenant.set_alert_status(alert_id, "InProgress", assignedTo="bob@contoso.com")
    rig.check()
    rig.tenant.set_alert_status(alert_id, "Resolved", classification="TruePositive", determination="Malware")
    rig.check()
    first, second, third = rig.followups()
    assert first.payload["text"] == f"{FIN_014}: 1 change"
    assert second.payload["text"] == f"{FIN_014}: 2 changes"  # status and owner changed in one update
    assert "New → *In progress*" in text_of(second)
    assert "assigned to bob@contoso.com (was unassigned)" in text_of(second)
    assert third.payload["text"] == f"{FIN_014}: 1 change"
    assert "In progress → *Resolved* (TruePositive / Malware)" in text_of(third)
    assert len(set(rig.followup_counts())) == 3


def test_no_change_means_no_reply(rig: Rig) -> None:
    rig.watch()
    posts_before = post_calls(rig)
    for _ in range(5):
        report = rig.check()
        assert (report.ran, report.changes, report.posted) == (True, 0, 0)
    assert post_calls(rig) == posts_before  # not a single chat.postMessage
    assert rig.delta_calls() == 5


def test_many_changes_in_one_check_are_one_bounded_reply(rig: Rig) -> None:
    rig.watch()
    for n in range(11):
        rig.add_alert(title=f"Alert number {n}")
    report = rig.check()
    assert (report.changes, report.posted) == (11, 1)
    [reply] = rig.followups()
    assert reply.payload["text"] == f"{FIN_014}: 11 changes"
    assert "…and 3 more changes" in text_of(reply)
    assert text_of(reply).count("*New alert*") == 8


def test_the_root_card_is_redrawn_with_counts_and_last_check(rig: Rig) -> None:
    watch = rig.watch()
    header_before = rig.standin.posts[0].payload["blocks"][0]["text"]["text"]
    assert header_before == f"{FIN_014} · 8 alerts"
    rig.check()  # the first check draws the card once, with its time
    assert len(rig.root_updates(watch)) == 1
    rig.add_alert()
    rig.check()
    updates = rig.root_updates(watch)
    assert len(updates) == 2
    latest = updates[-1].payload
    assert latest["blocks"][0]["text"]["text"] == f"{FIN_014} · 9 alerts"
    assert "last checked <!date^" in text_of(updates[-1])
    rig.check()  # nothing changed: the card is left alone until it is ten minutes old
    assert len(rig.root_updates(watch)) == 2
    for _ in range(10):
        rig.check()
    assert len(rig.root_updates(watch)) == 3


def test_the_same_update_seen_in_overlapping_polls_is_reported_once(rig: Rig) -> None:
    rig.watch()
    alert_id = rig.add_alert()
    rig.check()
    rig.clock.advance(30)
    rig.tenant.set_alert_status(alert_id, "InProgress")  # updated at 12:01:30, Defender's watermark from then on
    rig.check(30)
    rig.check()  # this poll reaches back 15 minutes before the watermark: it sees the same update again
    rig.check()
    if rig.graph:
        # One alerts_v2 read per poll after the backfill, each from the mirror's watermark minus its overlap:
        # the reads at 12:03 and 12:04 reach back before the 12:01:30 update, and the poller sees it again.
        queries = [path for _, path in rig.tenant.request_log if kind_of(path) == "graph-alerts"][1:]
        assert len(queries) == 4
        assert all(graph_since(query) < START + timedelta(minutes=1, seconds=30) for query in queries[2:])
    else:
        queries = [path for _, path in rig.tenant.request_log if path.startswith("/api/alerts")]
        assert len(queries) == 4
        # The first poll reaches back from this host's clock (12:01 less an interval and the overlap), the second
        # from the alert's lastUpdateTime (12:00), the next two from the update's (12:01:30): both see it again.
        assert "lastUpdateTime ge 2026-11-27T11:45:00Z" in queries[0]
        assert "lastUpdateTime ge 2026-11-27T11:45:00Z" in queries[1]
        assert "lastUpdateTime ge 2026-11-27T11:46:30Z" in queries[2]
        assert "lastUpdateTime ge 2026-11-27T11:46:30Z" in queries[3]
    assert [p.payload["text"] for p in rig.followups()] == [f"{FIN_014}: 1 change", f"{FIN_014}: 1 change"]


def stamp(moment: datetime) -> str:
    """A lastUpdateTime as Defender writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def reported(rig: Rig, alert_id: str) -> int:
    """How many follow-ups mention the alert."""
    return sum(alert_id in text_of(p) for p in rig.followups())


@pytest.mark.parametrize("lag_minutes", [6, 14])
def test_an_update_that_becomes_visible_minutes_late_is_reported_once(rig: Rig, lag_minutes: int) -> None:
    """Ingestion lag: the alert shows up in the API with a lastUpdateTime minutes before the poll that first sees it,
    while another device's updates keep moving Defender's watermark on."""
    rig.watch()
    busy = rig.add_alert(FIN_015)
    for n in range(20):
        rig.tenant.set_alert_status(busy, "InProgress" if n % 2 else "New")
        rig.check()
    late = rig.add_alert(lastUpdateTime=stamp(rig.clock.wall() - timedelta(minutes=lag_minutes)))
    rig.check()
    for _ in range(20):  # later polls overlap the update again: it is not reported a second time
        rig.check()
    assert reported(rig, late) == 1


@pytest.mark.parametrize("minutes", [4, -4])
def test_a_bot_clock_off_by_minutes_misses_no_change(tmp_path: Path, defender_api: str, minutes: int) -> None:
    """Six changes a minute apart, seen by a bot whose clock runs 4 minutes ahead of (or behind) Defender's."""
    rig = Rig.build(tmp_path / "watches.db", api=defender_api, ahead=timedelta(minutes=minutes))
    try:
        rig.watch()
        alert_id = rig.add_alert()
        rig.check()
        for status in ("InProgress", "New", "InProgress", "New", "Resolved"):
            rig.clock.advance(20)
            rig.tenant.set_alert_status(alert_id, status)
            rig.check(40)
        rig.check()
        assert reported(rig, alert_id) == 6
        assert len(rig.followups()) == 6
    finally:
        rig.close()
        close_soon(rig.standin)


def test_a_bot_clock_behind_defenders_is_logged_once_with_the_figure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig.build(tmp_path / "watches.db", ahead=timedelta(minutes=-4))
    try:
        rig.watch()
        alert_id = rig.add_alert()
        for status in ("InProgress", "New", "Resolved"):
            rig.tenant.set_alert_status(alert_id, status)
            rig.check(0)  # the update is as new as Defender's clock: the figure is the whole skew
            rig.clock.advance(60)
    finally:
        rig.close()
        close_soon(rig.standin)
    skew = [r.getMessage() for r in caplog.records if "ahead of this host's clock" in r.getMessage()]
    assert len(skew) == 1
    assert skew[0].startswith("Defender reports an alert updated 240 s ahead of this host's clock")


def test_the_watermark_is_defenders_time_and_survives_a_restart(rig: Rig) -> None:
    rig.watch()
    alert_id = rig.add_alert()
    rig.check()
    assert rig.store.get_meta(poller_module.WATERMARK) == START.isoformat()  # the alert's lastUpdateTime
    rig.check()  # nothing new: it stays
    assert rig.store.get_meta(poller_module.WATERMARK) == START.isoformat()
    rig.clock.advance(180)
    rig.tenant.set_alert_status(alert_id, "InProgress")  # while the bot is down for half an hour
    rig.clock.advance(1800)
    again = rig.restart()
    try:
        again.check()
        assert reported(again, alert_id) == 2
        assert again.store.get_meta(poller_module.WATERMARK) == (START + timedelta(minutes=5)).isoformat()
    finally:
        again.close()


def test_a_severity_filter_reports_only_those_alerts(rig: Rig) -> None:
    rig.watch("ws-fin-014 severity:high")
    low = rig.add_alert(title="Low one", severity="Low")
    rig.add_alert(title="High one", severity="High")
    rig.check()
    [reply] = rig.followups()
    assert "High one" in text_of(reply)
    assert "Low one" not in text_of(reply)
    rig.tenant.set_alert_status(low, "Resolved")
    rig.check()
    assert len(rig.followups()) == 1


def test_other_devices_are_not_reported(rig: Rig) -> None:
    rig.watch()
    rig.add_alert(FIN_015)
    report = rig.check()
    assert (report.changes, rig.followups()) == (0, [])


def test_two_channels_watching_one_device_each_get_the_change(rig: Rig) -> None:
    rig.watch()
    rig.watches.start("C0OTHER", "U0BOB", parse_query("ws-fin-014"), timedelta(hours=1))
    rig.add_alert()
    report = rig.check()
    assert (report.defender_calls, report.posted) == (1, 2)
    assert sorted(p.payload["channel"] for p in rig.followups()) == [CHANNEL, "C0OTHER"]


# -- ending watches --------------------------------------------------------------------------------------------


def test_an_expired_watch_ends_with_one_reply_and_is_not_checked_again(rig: Rig) -> None:
    watch = rig.watch(hours=1)
    rig.check(30 * 60)
    assert rig.followups() == []
    report = rig.check(31 * 60)
    assert report.ended == [watch.id]
    [ended] = rig.followups()
    assert ended.payload["text"] == f"{FIN_014}: watch ended"
    assert ":stop_sign: Watch ended: expired." in text_of(ended)
    stored = rig.store.watch(watch.id)
    assert stored is not None
    assert stored.status.value == "ended"
    assert rig.store.live_watches() == []
    calls = rig.delta_calls()
    rig.add_alert()
    for _ in range(3):
        assert rig.check().ended == []
    assert rig.delta_calls() == calls  # no watches: no polling at all
    assert len(rig.followups()) == 1


def test_a_change_just_before_expiry_is_reported_before_the_watch_ends(rig: Rig) -> None:
    rig.watch(hours=1)
    rig.check(59 * 60)
    rig.clock.advance(30)
    alert_id = rig.add_alert()  # 30 s before the watch expires, found by the first check after it
    rig.check(60)
    change, ended = rig.followups()
    assert alert_id in text_of(change)
    assert "Watch ended: expired" in text_of(ended)


def test_stopping_a_watch_ends_it_with_one_reply(rig: Rig) -> None:
    watch = rig.watch()
    note = rig.watches.stop(CHANNEL, "U0BOB", parse_query("ws-fin-014"))
    assert note.message.text == f"Stopped watching {FIN_014}."
    rig.poller.run_once(check=False)  # what deliver_soon() wakes the background thread for
    [ended] = rig.followups()
    assert ":stop_sign: Watch ended: stopped by <@U0BOB>." in text_of(ended)
    assert rig.store.live_watches() == []
    again = rig.watches.stop(CHANNEL, "U0BOB", parse_query("ws-fin-014"))
    assert again.message.text == "No watch on ws-fin-014 in this channel."
    for _ in range(3):
        rig.check(3600)  # long past its expiry too
    assert rig.followup_counts() == Counter({f"{watch.id}:1": 1})


def test_ending_twice_posts_one_watch_ended_reply(rig: Rig) -> None:
    """A stop racing the expiry (or a crash between recording the end and marking the watch ended)."""
    watch = rig.watch(hours=1)
    rig.poller.end(watch, "stopped", rig.clock.wall(), by="U0BOB")
    rig.poller.end(watch, "expired", rig.clock.wall() + timedelta(seconds=1))
    rig.poller.run_once(check=False)
    assert len(rig.followups()) == 1


def test_an_expired_watch_in_a_channel_that_refuses_posts_stays_ended(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """The final reply cannot be posted (bot removed): the watch must not come back to life as paused."""
    watch = rig.watch(hours=1)
    rig.standin.fail_next("chat.postMessage", error="not_in_channel", times=10)
    rig.check(61 * 60)
    for _ in range(3):
        rig.check()
    stored = rig.store.watch(watch.id)
    assert stored is not None
    assert stored.status.value == "ended"
    assert rig.store.live_watches() == []
    assert [len(r.changes) for r in rig.store.pending_replies()] == [1]  # the one "watch ended", kept
    refused = [
        r for r in caplog.records if r.getMessage().endswith("chat.postMessage to C0INCIDENT failed: not_in_channel")
    ]
    assert len(refused) == 1  # tried once, not on every cycle


# -- the alert cache -------------------------------------------------------------------------------------------


def test_a_lookup_right_after_a_check_costs_no_defender_call(rig: Rig) -> None:
    watch = rig.watch()
    rig.watches.start("C0OTHER", "U0BOB", parse_query("ws-fin-015"), timedelta(hours=1))
    alert_id = rig.add_alert()
    for _ in range(3):
        rig.check()
    calls = rig.tenant.calls
    busy = rig.service.device_alerts(watch.machine_id)
    assert busy.from_cache is True
    assert alert_id in {a.id for a in busy.alerts}
    still = rig.service.device_alerts(rig.mid(FIN_015))  # watched, nothing changed: covered by the poll too
    assert still.from_cache is True
    assert rig.tenant.calls == calls


def test_polling_costs_one_defender_call_per_interval_for_any_number_of_quiet_watches(rig: Rig) -> None:
    names = {str(m["computerDnsName"]) for m in rig.tenant.machines}
    hosts = sorted(name for name in names if name.endswith(".contoso.local") and name.startswith(("ws-", "srv-")))
    for host in hosts[:6]:
        rig.watches.start(CHANNEL, "U0ALICE", parse_query(host.split(".")[0]), timedelta(hours=8))
    before = rig.tenant.calls
    for _ in range(15):  # 15 minutes: includes the first drawing of each card and the 10-minute redraw
        rig.check()
    assert rig.tenant.calls - before == 15


def test_merge_updates_needs_a_cached_list_at_least_as_recent_as_the_poll(rig: Rig) -> None:
    mid = rig.mid()
    since = rig.clock.wall() - timedelta(minutes=3)
    assert rig.service.merge_updates(mid, [], covered_since=since) is False  # nothing cached: nothing to complete
    cached = rig.service.device_alerts(mid)
    assert rig.service.merge_updates(mid, [], covered_since=rig.clock.wall() + timedelta(seconds=1)) is False
    new_alert = rig.tenant.add_alert(mid, title="Added")
    [fresh] = [a for a in rig.client.list_alerts_updated_since(since) if a.id == new_alert["id"]]
    rig.clock.advance(50)
    assert rig.service.merge_updates(mid, [fresh], covered_since=since) is True
    merged = rig.service.device_alerts(mid)
    assert merged.from_cache is True
    assert merged.total == cached.total + 1
    assert new_alert["id"] in {a.id for a in merged.alerts}
    assert merged.age == timedelta(0)


def test_merge_updates_keeps_a_newer_cached_version_of_an_alert(rig: Rig) -> None:
    mid = rig.mid()
    since = rig.clock.wall() - timedelta(minutes=3)
    alert_id = rig.add_alert()
    [old_version] = [a for a in rig.client.list_alerts_updated_since(since) if a.id == alert_id]  # the poll's answer
    rig.clock.advance(5)
    rig.tenant.set_alert_status(alert_id, "Resolved")
    rig.service.device_alerts(mid)  # someone looks the device up meanwhile: the cache has the resolved alert
    assert rig.service.merge_updates(mid, [old_version], covered_since=since) is True
    [merged] = [a for a in rig.service.device_alerts(mid).alerts if a.id == alert_id]
    assert merged.status.value == "Resolved"


# -- the Defender budget ---------------------------------------------------------------------------------------


def slowed_note(posted: Posted) -> str | None:
    found = re.search(r"Checks slowed to every (\d+) min", text_of(posted))
    return found[0] if found else None


def test_a_tight_budget_stretches_the_interval_and_says_so(tmp_path: Path, defender_api: str) -> None:
    clock = FakeClock()
    # 2 calls a minute, half of them (1) for background work: a second poll within a minute does not fit.
    budget = RateBudget(per_minute=2, per_hour=1500, per_api={Api.GRAPH_ALERTS: ApiLimits(2, 1500)}, clock=clock)
    made = Rig.build(tmp_path / "w.db", clock=clock, budget=budget, api=defender_api)
    try:
        watch = made.watch()
        made.check()
        assert made.poller.interval == INTERVAL
        alert_id = made.add_alert()
        report = made.check(10)  # 10 s after the last poll: the budget says no
        assert (report.ran, report.defender_calls, report.note) == (
            True,
            0,
            "Checks slowed to every 2 min: Defender's call budget is tight.",
        )
        assert made.poller.interval == 2 * INTERVAL
        assert slowed_note(made.root_updates(watch)[-1]) == "Checks slowed to every 2 min"
        made.check(10)
        assert made.poller.interval == 4 * INTERVAL
        assert slowed_note(made.root_updates(watch)[-1]) == "Checks slowed to every 4 min"
        assert made.followups() == []

        report = made.check(60)  # the budget has room again: the change is found, the note goes away
        assert (report.defender_calls, report.changes, report.posted, report.note) == (1, 1, 1, None)
        assert made.poller.interval == INTERVAL
        assert slowed_note(made.root_updates(watch)[-1]) is None
        [reply] = made.followups()
        assert alert_id in text_of(reply)
    finally:
        made.close()
        close_soon(made.standin)


def test_no_background_budget_at_all_slows_down_to_the_cap_and_lookups_still_work(
    tmp_path: Path, defender_api: str
) -> None:
    clock = FakeClock()
    budget = RateBudget(background_minute_share=0.0, clock=clock)
    made = Rig.build(tmp_path / "w.db", clock=clock, budget=budget, api=defender_api)
    try:
        made.watch()
        intervals = []
        for _ in range(6):
            report = made.check(made.poller.interval)
            assert (report.ran, report.defender_calls) == (True, 0)
            intervals.append(made.poller.interval)
        assert intervals == [120.0, 240.0, 480.0, 960.0, 960.0, 960.0]  # stretched up to 16x, never failing
        assert made.delta_calls() == 0
        assert made.service.device_alerts(made.mid(FIN_015)).total > 0  # people keep their share
    finally:
        made.close()
        close_soon(made.standin)


def test_a_failing_defender_loses_no_change(rig: Rig) -> None:
    rig.watch()
    rig.check()
    alert_id = rig.add_alert()
    rig.tenant.fail_next(503, times=3)  # every attempt of the client's retries
    report = rig.check()
    assert (report.defender_calls, report.changes) == (0, 0)
    assert rig.poller.interval == 2 * INTERVAL
    rig.clock.advance(10 * 60)  # a long gap: the next poll still reaches back to the last good one
    report = rig.check(rig.poller.interval)
    assert (report.changes, report.posted) == (1, 1)
    assert alert_id in text_of(rig.followups()[0])


def test_a_long_outage_does_not_cost_a_defender_call_per_watch_every_cycle(rig: Rig) -> None:
    """Cards are redrawn when the note about slowed checks changes, not on every failed poll."""
    names = {str(m["computerDnsName"]) for m in rig.tenant.machines}
    hosts = sorted(name for name in names if name.startswith(("ws-", "srv-")) and name != "srv-build-07.contoso.local")
    for host in hosts[:5]:
        rig.watches.start(CHANNEL, "U0ALICE", parse_query(host.split(".")[0]), timedelta(hours=8))
    rig.check()
    notes, per_cycle, updates = [], [], []
    for _ in range(7):
        rig.tenant.fail_next(503, times=3)  # the delta poll fails after the client's retries
        alert_calls, update_calls = rig.alert_calls(), len(rig.standin.calls)
        report = rig.check(rig.poller.interval)
        notes.append(report.note)
        per_cycle.append(rig.alert_calls() - alert_calls)
        updates.append(sum(m == "chat.update" for m, _ in rig.standin.calls[update_calls:]))
    assert [int(re.findall(r"\d+", str(n))[0]) for n in notes] == [2, 4, 8, 16, 16, 16, 16]
    assert updates == [5, 5, 5, 5, 0, 0, 0]  # the cards say so once per change of the note
    # And an unchanged note costs Defender nothing: the failed poll's three tries, no call for any card.
    assert per_cycle[4:] == [3, 3, 3], per_cycle


def test_more_updates_than_one_answer_holds_falls_back_to_each_watched_device(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.watch()
    rig.check()
    monkeypatch.setattr(poller_module, "DELTA_TOP", 3)
    alert_ids = [rig.add_alert(FIN_015) for _ in range(3)]  # fills the answer with another device's updates
    mine = rig.add_alert(title="Mine")
    del alert_ids
    calls = rig.alert_calls()
    report = rig.check()
    assert report.defender_calls == 2  # the truncated delta, then this device's full list
    assert rig.alert_calls() - calls == (1 if rig.graph else 2)  # Graph: the list comes from the mirror's read
    assert report.changes == 1
    [reply] = rig.followups()
    assert mine in text_of(reply)


# -- Slack failures --------------------------------------------------------------------------------------------


def test_rate_limited_beyond_retries_keeps_the_reply_and_posts_it_once_later(
    rig: Rig, slack_sleeps: list[float]
) -> None:
    watch = rig.watch()
    rig.add_alert()
    rig.standin.fail_next("chat.postMessage", status=429, retry_after=1, times=5)
    report = rig.check()
    assert (report.changes, report.posted, report.pending) == (1, 0, 1)
    assert len(slack_sleeps) == 3  # the SDK waited out Retry-After three times, then gave up
    assert rig.followups() == []
    [pending] = rig.store.pending_replies()
    assert pending.attempted_at is not None

    report = rig.check()  # one more 429, a retry, and it is through
    assert (report.posted, report.pending) == (1, 0)
    assert rig.followup_counts() == Counter({f"{watch.id}:{pending.check_id}": 1})
    rig.check()
    assert len(rig.followups()) == 1


def test_server_errors_beyond_retries_keep_the_reply_and_keep_order(rig: Rig, slack_sleeps: list[float]) -> None:
    rig.watch()
    first = rig.add_alert(title="First")
    rig.standin.fail_next("chat.postMessage", status=503, times=3)
    assert rig.check().pending == 1
    assert len(slack_sleeps) == 2
    second = rig.add_alert(title="Second")
    report = rig.check()
    assert (report.posted, report.pending) == (2, 0)
    one, two = rig.followups()
    assert first in text_of(one)
    assert second in text_of(two)


def test_not_in_channel_pauses_the_watch_and_keeps_changes_until_it_is_started_again(rig: Rig) -> None:
    watch = rig.watch()
    first = rig.add_alert(title="First")
    rig.standin.fail_next("chat.postMessage", error="not_in_channel")
    report = rig.check()
    assert (report.changes, report.posted, report.pending) == (1, 0, 1)
    paused = rig.store.watch(watch.id)
    assert paused is not None
    assert paused.status.value == "paused"
    assert paused.pause_reason == "the bot is not in the channel: invite it, then start the watch again"
    listing = rig.watches.list(CHANNEL)
    assert "paused: the bot is not in the channel" in json.dumps(listing.message.blocks, ensure_ascii=False)

    second = rig.add_alert(title="Second")
    posts = post_calls(rig)
    report = rig.check()  # still checked (nothing is missed), but nothing is posted to a channel that refuses
    assert (report.changes, report.posted, report.pending) == (1, 0, 2)
    assert post_calls(rig) == posts

    rig.watches.start(CHANNEL, "U0ALICE", parse_query("ws-fin-014"), timedelta(hours=2))  # invited back
    resumed = rig.store.watch(watch.id)
    assert resumed is not None
    assert (resumed.status.value, resumed.pause_reason) == ("active", None)
    report = rig.poller.run_once(check=False)
    assert (report.posted, report.pending) == (2, 0)
    one, two = rig.followups()
    assert first in text_of(one)
    assert second in text_of(two)
    rig.check()
    assert len(rig.followups()) == 2


def test_a_failing_root_redraw_does_not_stop_the_replies(rig: Rig, slack_sleeps: list[float]) -> None:
    watch = rig.watch()
    rig.add_alert()
    rig.standin.fail_next("chat.update", status=500, times=10)
    report = rig.check()
    assert report.posted == 1
    assert rig.root_updates(watch) == []


# -- one poller per store --------------------------------------------------------------------------------------


def test_only_the_lease_holder_polls(rig: Rig) -> None:
    rig.watch()
    other = rig.restart("process-2")
    try:
        assert rig.check().ran is True  # process-1 takes the lease
        rig.add_alert()
        calls = rig.delta_calls()
        report = other.check()
        assert (report.ran, report.defender_calls) == (False, 0)
        assert rig.delta_calls() == calls
        assert rig.check(0).ran is True
        assert rig.delta_calls() == calls + 1
        assert len(rig.followups()) == 1

        rig.poller.stop()  # a clean shutdown releases the lease: no need to wait for it to expire
        rig.add_alert()
        assert other.check(1).ran is True
        assert len(rig.followups()) == 2
        assert rig.check(1).ran is False
    finally:
        other.close()


def test_a_dead_holders_lease_expires(rig: Rig) -> None:
    rig.watch()
    assert rig.check().ran is True  # lease until now + 150 s
    other = rig.restart("process-2")
    try:
        assert other.check(100).ran is False
        assert other.check(51).ran is True  # 151 s after process-1's last renewal
        assert rig.check(1).ran is False
    finally:
        other.close()


# -- the running bot -------------------------------------------------------------------------------------------


def test_commands_are_served_while_the_poller_is_busy(tmp_path: Path, defender_api: str) -> None:
    standin = SlackStandIn()
    tenant = SimulatedTenant(latency=0.4)  # every Defender call takes 0.4 s, the poller's included
    env = {
        "SLACK_BOT_TOKEN": standin.bot_token,
        "SLACK_SIGNING_SECRET": fake_secrets.SIGNING_SECRET,
        "SLACK_API_URL": standin.api_url,
    }
    settings = load_settings({"BOT_STATE_URL": f"sqlite:///{tmp_path}/w.db", "DEFENDER_API": defender_api})
    bot = build_slack_bot(build_runtime(settings, tenant=tenant), load_slack_settings(SlackMode.HTTP, env))
    try:
        watched = machine_id(tenant, FIN_014)
        watch, _ = bot.store.start_watch(
            channel=CHANNEL,
            machine_id=watched,
            device_name=FIN_014,
            filter_text="",
            user="U0ALICE",
            expires_at=datetime.now(UTC) + timedelta(hours=1),
            now=datetime.now(UTC),
        )
        bot.store.set_root(watch.id, "1.000001")
        tenant.add_alert(watched, title="Found while a person asks", severity="High")

        cycle = threading.Thread(target=bot.poller.run_once, name="cycle")
        cycle.start()
        time.sleep(0.1)  # the poller is waiting on Defender now
        signer = SlackRequests(fake_secrets.SIGNING_SECRET)
        body, headers = signer.command("ws-fin-015", response_url=standin.response_url("r1"))
        started = time.monotonic()
        response = bot.app.dispatch(BoltRequest(body=body.decode(), headers=headers))
        acked = time.monotonic() - started
        busy = cycle.is_alive()
        assert response.status == 200
        assert acked < 0.5
        assert busy  # the ack did not wait for the poll
        [card] = wait_for(lambda: [p for p in standin.posts if p.via == "response_url"])
        assert str(card.payload["text"]).startswith(FIN_015)
        cycle.join(timeout=10)
        assert not cycle.is_alive()
        assert [p.payload["text"] for p in standin.posts if reference(p)] == [f"{FIN_014}: 1 change"]
    finally:
        bot.close()
        close_soon(standin)


def test_the_background_thread_delivers_a_stop_at_once(rig: Rig) -> None:
    rig.watch()
    rig.poller.start()
    try:
        deadline = time.monotonic() + 5
        while rig.delta_calls() == 0:  # the first check runs when the thread starts
            assert time.monotonic() < deadline
            time.sleep(0.01)
        rig.watches.stop(CHANNEL, "U0BOB", parse_query("ws-fin-014"))  # calls deliver_soon()
        [ended] = wait_for(rig.followups)
        assert "Watch ended: stopped by <@U0BOB>" in text_of(ended)
    finally:
        rig.poller.stop()
    assert rig.store.try_lease("someone-else", rig.clock(), 10) is True  # stop() released the lease


# -- scaling (the same run as bench/watch_scaling.py) ----------------------------------------------------------


@pytest.mark.defender_api("mde", reason="bench.watch_scaling drives the MDE client; Graph: the test after this one")
@pytest.mark.parametrize("devices", [1, 10, 200])
def test_defender_calls_per_interval_do_not_grow_with_the_number_of_watches(devices: int) -> None:
    run = run_scaling(devices, intervals=12)  # past the 10-minute redraw of every root card
    assert run.defender_calls == [1] * 12
    assert run.defender_by_api == Counter({"delta /api/alerts": 12})  # the delta query only: no per-device call at all
    assert run.changes >= 12
    assert run.replies >= 12
    assert run.slack_updates[0] == devices  # every card is drawn once by the first check


@pytest.mark.defender_api("graph", reason="the Graph counterpart of the scaling run above (MDE's bench)")
@pytest.mark.parametrize("devices", [1, 19])
def test_graph_reads_per_interval_do_not_grow_with_the_number_of_watches(
    tmp_path: Path, defender_api: str, devices: int
) -> None:
    made = Rig.build(tmp_path / "w.db", api=defender_api)
    try:
        seen = sorted({str(m["id"]) for m in made.tenant.machines})  # by id: the stale duplicate record too
        watched = seen[:devices]
        for mid in watched:
            made.watches.start(CHANNEL, "U0ALICE", parse_query(mid), timedelta(hours=8))
        per_interval: list[Counter[str]] = []
        for n in range(12):  # past the 10-minute redraw of every root card
            made.tenant.add_alert(watched[n % devices], title=f"Scaling alert {n}", severity="High")
            before = len(made.tenant.request_log)
            report = made.check()
            assert (report.changes, report.posted) == (1, 1)
            per_interval.append(Counter(kind_of(path) for _, path in made.tenant.request_log[before:]))
        assert per_interval == [Counter({"graph-alerts": 1})] * 12  # one delta read, no hunting, whatever the count
    finally:
        made.close()
        close_soon(made.standin)
