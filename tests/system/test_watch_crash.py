"""Exactly once across crashes: a process that dies anywhere in a cycle, and the next one on the same file.

A crash is a `Crash` raised at one step (a `BaseException`, so no `except Exception` in the bot can swallow
it, as nothing survives a real kill). The restarted process is a new store object, alert service, Slack
publisher and poller (another lease holder) on the same SQLite file, Slack stand-in and simulated tenant.
Slack is then asked what it received: every change exactly once, nothing missed.

The last tests kill a real process with SIGKILL, mid-cycle, and start another on the same database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from slack_sdk.http_retry import builtin_handlers as slack_builtin_handlers
from slack_sdk.http_retry import handler as slack_handlers

from bot.demo.standin import SlackStandIn
from bot.state.watches import PendingReply, Watch, WatchStatus
from bot.watch.poller import Delivered, Publisher
from tests.doubles.processes import Crash
from tests.doubles.slack import close_soon, reference, text_of
from tests.doubles.watch import FIN_014, FIN_015, INTERVAL, Rig

LEASE_TTL = INTERVAL * 2.5
ROOT = Path(__file__).resolve().parents[2]  # the repository: the killed processes import `bot` and `tests`


class CrashingPublisher:
    """Wraps the Slack publisher; dies once at `step` ('before_post', 'after_post' or 'update_root')."""

    def __init__(self, inner: Publisher, step: str) -> None:
        self.inner = inner
        self.step = step
        self.armed = False

    def _die(self, step: str) -> None:
        if self.armed and self.step == step:
            self.armed = False
            raise Crash(step)

    def post_reply(self, watch: Watch, reply: PendingReply) -> Delivered:
        self._die("before_post")  # mark_attempted has just been committed
        delivered = self.inner.post_reply(watch, reply)
        self._die("after_post")  # the message is in Slack, mark_posted has not run
        return delivered

    def find_reply(self, watch: Watch, reply: PendingReply) -> str | None:
        return self.inner.find_reply(watch, reply)

    def update_root(self, watch: Watch, note: str | None) -> None:
        self._die("update_root")
        self.inner.update_root(watch, note)


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    made = SlackStandIn()
    yield made
    close_soon(made)


@pytest.fixture
def rigs(tmp_path: Path, standin: SlackStandIn) -> Iterator[list[Rig]]:
    """Every process a test starts, closed at the end (a crashed one is simply abandoned until then)."""
    started: list[Rig] = []
    yield started
    for each in started:
        each.close()


def first_process(tmp_path: Path, standin: SlackStandIn, rigs: list[Rig], step: str | None = None) -> Rig:
    wrapper: Callable[[Publisher], Publisher] | None = None
    if step is not None:
        wrapper = lambda inner: CrashingPublisher(inner, step)  # noqa: E731
    rig = Rig.build(tmp_path / "watches.db", standin=standin, holder="process-1", publisher=wrapper)
    rigs.append(rig)
    return rig


def restart(old: Rig, rigs: list[Rig]) -> Rig:
    """A new process after the old one died: its lease is left to expire, as a killed process cannot release it."""
    new = old.restart("process-2")
    rigs.append(new)
    assert new.check(1).ran is False  # the dead process's lease still counts for a while
    new.clock.advance(LEASE_TTL)
    return new


def arm(rig: Rig) -> None:
    publisher = rig.publisher
    assert isinstance(publisher, CrashingPublisher)
    publisher.armed = True


def assert_exactly_once(rig: Rig, alert_ids: list[str]) -> None:
    counts = rig.followup_counts()
    assert counts and set(counts.values()) == {1}, counts  # no reference was posted twice
    posted = "".join(text_of(p) for p in rig.followups())
    for alert_id in alert_ids:
        assert posted.count(alert_id) == 1, alert_id  # every change is in exactly one reply
    assert rig.store.pending_replies() == []


# -- each step of a cycle ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["before_post", "after_post", "update_root"])
def test_a_crash_at_any_step_of_delivery_posts_each_change_once(
    tmp_path: Path, standin: SlackStandIn, rigs: list[Rig], step: str
) -> None:
    rig = first_process(tmp_path, standin, rigs, step)
    rig.watch("ws-fin-014")
    rig.watch("ws-fin-015")
    rig.check()  # first check: both root cards are drawn once, the lease is taken
    alerts = [rig.add_alert(FIN_014, title="One"), rig.add_alert(FIN_014, title="Two"), rig.add_alert(FIN_015)]
    arm(rig)
    with pytest.raises(Crash):
        rig.check()
    posted_before = len(rig.followups())
    assert posted_before == (1 if step == "after_post" else 0)

    after = restart(rig, rigs)
    report = after.check(0)
    assert report.ran is True
    assert_exactly_once(after, alerts)
    assert len(after.followups()) == 2  # one reply per watch for that check

    later = after.add_alert(FIN_014, title="Later")
    after.check()
    after.check()
    assert_exactly_once(after, [*alerts, later])


def test_a_crash_after_recording_before_any_post(
    tmp_path: Path, standin: SlackStandIn, rigs: list[Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = first_process(tmp_path, standin, rigs)
    rig.watch()
    rig.check()
    alerts = [rig.add_alert(title="One"), rig.add_alert(title="Two")]
    recorded: list[int | None] = []
    real = rig.store.record_check

    def record_then_die(*args: Any, **kwargs: Any) -> int | None:
        check_id = real(*args, **kwargs)
        recorded.append(check_id)
        if check_id is not None:
            raise Crash("after record_check")
        return check_id

    monkeypatch.setattr(rig.store, "record_check", record_then_die)
    with pytest.raises(Crash):
        rig.check()
    assert recorded and recorded[-1] is not None
    [pending] = rig.store.pending_replies()
    assert pending.attempted_at is None
    assert rig.followups() == []

    after = restart(rig, rigs)
    after.check(0)
    assert_exactly_once(after, alerts)
    after.check()
    assert_exactly_once(after, alerts)


def test_a_crash_before_recording_finds_the_changes_again(
    tmp_path: Path, standin: SlackStandIn, rigs: list[Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Died after Defender answered, before the check was saved: nothing was kept, the next poll reaches back."""
    rig = first_process(tmp_path, standin, rigs)
    rig.watch()
    rig.check()
    alerts = [rig.add_alert()]

    def die(*_: Any, **__: Any) -> int | None:
        raise Crash("before record_check")

    monkeypatch.setattr(rig.store, "record_check", die)
    with pytest.raises(Crash):
        rig.check()
    after = restart(rig, rigs)
    after.clock.advance(20 * 60)  # however long it stayed down
    after.check(0)
    assert_exactly_once(after, alerts)


def test_a_crash_while_ending_a_watch_posts_one_watch_ended(
    tmp_path: Path, standin: SlackStandIn, rigs: list[Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Died between recording the final reply and marking the watch ended: the next process ends it again."""
    rig = first_process(tmp_path, standin, rigs)
    watch = rig.watch(hours=1)
    rig.check()
    real = rig.store.set_status

    def die_on_end(watch_id: int, status: WatchStatus, reason: str | None = None) -> None:
        if status is WatchStatus.ENDED:
            raise Crash("after recording the end")
        real(watch_id, status, reason)

    monkeypatch.setattr(rig.store, "set_status", die_on_end)
    with pytest.raises(Crash):
        rig.check(3600)
    live = rig.store.watch(watch.id)
    assert live is not None
    assert live.status is WatchStatus.ACTIVE  # to the next process, it expires all over again

    after = restart(rig, rigs)
    after.check(0)
    after.check()
    [ended] = after.followups()
    assert "Watch ended: expired" in text_of(ended)
    stored = after.store.watch(watch.id)
    assert stored is not None
    assert stored.status is WatchStatus.ENDED


def test_crashing_repeatedly_at_the_same_step_still_posts_once(
    tmp_path: Path, standin: SlackStandIn, rigs: list[Rig]
) -> None:
    rig = first_process(tmp_path, standin, rigs, "after_post")
    rig.watch()
    rig.check()
    alerts = [rig.add_alert()]
    arm(rig)
    with pytest.raises(Crash):
        rig.check()
    current = rig
    for n in range(3):  # each restart dies right after posting something else, then the last one survives
        nxt = current.restart(f"process-{n + 2}", publisher=lambda inner: CrashingPublisher(inner, "after_post"))
        rigs.append(nxt)
        nxt.clock.advance(LEASE_TTL)
        alerts.append(nxt.add_alert(title=f"During restart {n}"))
        arm(nxt)
        with pytest.raises(Crash):
            nxt.check(0)
        current = nxt
    final = restart(current, rigs)
    final.check(0)
    assert_exactly_once(final, alerts)


def test_a_restart_while_slack_cannot_list_the_thread_does_not_post_twice(
    tmp_path: Path, standin: SlackStandIn, rigs: list[Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_time = SimpleNamespace(sleep=lambda _: None)
    monkeypatch.setattr(slack_handlers, "time", fake_time)
    monkeypatch.setattr(slack_builtin_handlers, "time", fake_time)
    rig = first_process(tmp_path, standin, rigs, "after_post")
    rig.watch()
    rig.check()
    alerts = [rig.add_alert()]
    arm(rig)
    with pytest.raises(Crash):
        rig.check()
    after = restart(rig, rigs)
    standin.fail_next("conversations.replies", status=503, times=3)  # beyond the SDK's two retries
    after.check(0)
    after.check()
    assert_exactly_once(after, alerts)


# -- a real kill -9 ---------------------------------------------------------------------------------------------

PROCESS = textwrap.dedent(
    '''
    """One bot process on a shared database; Defender is rebuilt identically in each (fixed seed, fixed time)."""
    import os, sys, time
    from datetime import UTC, datetime, timedelta

    from bot.alerts.query import parse_query
    from bot.alerts.service import AlertService
    from bot.defender.auth import StaticTokenProvider
    from bot.defender.client import DefenderClient
    from bot.defender.simulator import SIMULATOR_BASE_URL, SimulatedTenant, SimulatorTransport
    from bot.slack.cards import CardContext
    from tests.doubles.cards import TEST_SEAL
    from bot.slack.poster import Poster, web_client
    from bot.slack.watching import SlackWatches
    from bot.watch.poller import Poller
    from bot.state.sqlite import SqliteWatchStore

    T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    phase = os.environ["PHASE"]
    wall = [T0]
    tenant = SimulatedTenant(now=lambda: wall[0])
    mid = next(m["id"] for m in tenant.machines if m["computerDnsName"] == "ws-fin-014.contoso.local")
    client = DefenderClient(SIMULATOR_BASE_URL, StaticTokenProvider("t"), transport=SimulatorTransport(tenant))
    service = AlertService(client, now=lambda: wall[0])
    store = SqliteWatchStore(os.environ["DB"])
    poster = Poster(web_client(os.environ["TOKEN"], os.environ["API_URL"]))
    portal = "https://security.microsoft.com"
    watches = SlackWatches(store, service, poster, lambda: CardContext(portal, None, seal=TEST_SEAL),
                           now=lambda: wall[0])


    class Hooked:
        """The Slack publisher, with the test's kill points around the post."""

        def post_reply(self, watch, reply):
            if os.environ.get("HANG_BEFORE_POST"):
                print("ATTEMPTED", reply.reference, flush=True)
                time.sleep(60)  # the test kills the process here
            delivered = watches.post_reply(watch, reply)
            if os.environ.get("HANG_AFTER_POST"):
                print("POSTED", reply.reference, flush=True)
                time.sleep(60)
            return delivered

        def find_reply(self, watch, reply):
            return watches.find_reply(watch, reply)

        def update_root(self, watch, note):
            watches.update_root(watch, note)


    lease_clock = float(os.environ["LEASE_CLOCK"])
    poller = Poller(store, service, client, Hooked(), clock=lambda: lease_clock, now=lambda: wall[0],
                    holder=f"pid-{os.getpid()}")
    watches.poller = poller
    if phase == "first":
        watches.start("C0INCIDENT", "U0ALICE", parse_query("ws-fin-014"), timedelta(hours=2))
    wall[0] = T0 + timedelta(seconds=30)
    tenant.add_alert(mid, id="da-kill-1", title="Before the kill, one")
    tenant.add_alert(mid, id="da-kill-2", title="Before the kill, two")
    wall[0] = T0 + timedelta(seconds=60)
    if phase == "second":
        wall[0] = T0 + timedelta(seconds=90)
        tenant.add_alert(mid, id="da-while-down", title="While the bot was down")
        wall[0] = T0 + timedelta(seconds=150)
    report = poller.run_once()
    print("REPORT", report.ran, report.changes, report.posted, report.pending, flush=True)
    '''
)


@pytest.mark.parametrize("hook", ["HANG_AFTER_POST", "HANG_BEFORE_POST"])
def test_kill_9_mid_cycle_then_a_new_process_posts_each_change_once(
    tmp_path: Path, standin: SlackStandIn, hook: str
) -> None:
    script = tmp_path / "process.py"
    script.write_text(PROCESS)
    base = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DB": str(tmp_path / "watches.db"),
        "TOKEN": standin.bot_token,
        "API_URL": standin.api_url,
    }
    first = subprocess.Popen(
        [sys.executable, str(script)],
        env={**base, "PHASE": "first", "LEASE_CLOCK": "0", hook: "1"},
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert first.stdout is not None
        line = first.stdout.readline()  # blocks until the process reaches the kill point
        assert line.split()[0] in ("POSTED", "ATTEMPTED"), line
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    [killed_ref] = line.split()[1:]
    posted_by_first = Counter(reference(p) for p in standin.posts if reference(p))
    assert posted_by_first == (Counter({killed_ref: 1}) if hook == "HANG_AFTER_POST" else Counter())

    second = subprocess.run(
        [sys.executable, str(script)],
        env={**base, "PHASE": "second", "LEASE_CLOCK": str(LEASE_TTL + 1)},  # the dead process's lease has expired
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )
    assert second.returncode == 0, second.stderr
    assert "REPORT True 1 2 0" in second.stdout  # the killed reply (posted or found), and the one change since

    followups = [p for p in standin.posts if reference(p)]
    counts = Counter(reference(p) for p in followups)
    assert set(counts.values()) == {1}, counts
    assert len(counts) == 2
    assert counts[killed_ref] == 1
    text = "".join(text_of(p) for p in followups)
    for alert_id in ("da-kill-1", "da-kill-2", "da-while-down"):
        assert text.count(alert_id) == 1, alert_id
    assert sum(p.via == "chat.postMessage" and reference(p) is None for p in standin.posts) == 2  # card + note
