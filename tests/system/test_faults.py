"""Fault runs: the real bot against a Defender, an identity provider and a Slack that misbehave on purpose.

Each `test_fault_*` runs the whole bot (the Bolt app through `App.dispatch` with signed requests, its work pool,
its watch poller; once the real `python -m bot http` process) against a fault, and checks three things:

1. nothing crashes: every request is acknowledged, no "Something went wrong" card, no ERROR log line, and a
   request made after the fault cleared is answered normally;
2. the person is told something true: the problem card names the fault (unavailable, throttled with the wait,
   sign-in failed, bad answer), cached data is shown marked stale, or, for Slack faults, the answer arrives
   late or its loss is logged;
3. for watches, each change is posted exactly once after the fault clears: nothing lost, nothing twice.

Defender here is the built-in simulator behind a real HTTP socket on 127.0.0.1 (`DefenderServer`), so read
timeouts, refused connections and bodies cut mid-stream are the real thing for httpx. Time is scaled: the
client's read timeout is 0.25 s here (20 s in production) and a "slow" Defender answers in 0.5 s under a 1 s
timeout (10 s under 20 s in production); the client's clock and its backoff sleeps are a stepped clock, so
retries and `Retry-After` waits cost no real time. The fault table built from these runs is docs/faults.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import trustme

from bot.alerts.mirror import GraphAlertSource
from bot.alerts.source import AlertSource
from bot.config import SlackMode, load_settings, load_slack_settings
from bot.defender.auth import MsalTokenProvider, StaticTokenProvider, TokenProvider
from bot.defender.client import DefenderClient
from bot.defender.graph import GraphClient
from bot.defender.simulator import SimulatedTenant
from bot.demo.slack_requests import SlackRequests
from bot.demo.standin import RESPONSE_PATH, Posted, SlackStandIn
from bot.runtime import SlackBot, build_runtime, build_slack_bot
from bot.slack.server import RESTARTING
from bot.state.redis.connection import RedisConnection
from bot.state.redis.flight import LOCK_TTL
from bot.state.redis.mirror import RedisMirror
from bot.state.watches import WatchStatus
from tests.doubles import secrets as fake_secrets
from tests.doubles.bot_process import ROOT
from tests.doubles.bot_process import command as bot_process_command
from tests.doubles.defender import DefenderServer, Fault, machine_id
from tests.doubles.oidc import OidcDouble, trust
from tests.doubles.processes import (
    BotProcess,
    BotProcesses,
    Crash,
    bot_command,
    free_port,
    send_burst,
    wait_until,
)
from tests.doubles.redis import REDIS_URL, delete_prefix, require_redis, unique_prefix, url_with_prefix
from tests.doubles.slack import (
    MEMORY_STATE_URL,
    SIGNING_SECRET,
    Harness,
    ack_json,
    all_text,
    close_soon,
    harness,
    header,
    slack_env,
    with_alert_source,
)

FIN_014 = "ws-fin-014.contoso.local"
FIN_015 = "ws-fin-015.contoso.local"
ENG_101 = "ws-eng-101.contoso.local"
SQL_02 = "srv-sql-02.contoso.local"
CHANNEL = "C0INCIDENT"
READ_TIMEOUT = 0.25  # the client's read timeout in these runs (production: DEFENDER_TIMEOUT_SECONDS = 20)


CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
SCOPE = "https://api.securitycenter.microsoft.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
BOT_ENV = {"BOT_AUDIT_LOG": "off"}

UNAVAILABLE = ("Defender could not be reached.", "Try again in a minute.", "Defender unavailable")
THROTTLED = "Defender is throttling the bot's requests."
SIGN_IN = ("The bot could not sign in to Defender.", "An admin should check the bot's configuration and logs.")
BAD_ANSWER = (
    "Defender sent an answer the bot could not use.",
    "Try again later; if it persists, an admin should check the bot's logs.",
    "Defender sent a bad response",
)


class SteppedClock:
    """Monotonic time plus a manual offset; `advance` doubles as the client's backoff `sleep` (no real wait)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.offset = 0.0

    def __call__(self) -> float:
        with self._lock:
            return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.offset += seconds

    def wall(self) -> datetime:
        """UTC now plus the same offset (the Graph mirror dates its syncs with it)."""
        with self._lock:
            return datetime.now(UTC) + timedelta(seconds=self.offset)


# -- the bot, wired to that Defender ----------------------------------------------------------------------------


def fault_bot(
    standin: SlackStandIn,
    defender: DefenderServer,
    clock: SteppedClock,
    *,
    tokens: TokenProvider | None = None,
    read_timeout: float = READ_TIMEOUT,
    api: str = "mde",
) -> SlackBot:
    """The production wiring (`build_runtime` + `build_slack_bot`) with the Defender client pointed at `defender`.

    Only the client is rebuilt: its base URL, token provider, read timeout and clock; the budget, cache settings,
    store, poller and Slack side are the ones `python -m bot http` builds. With `api="graph"` the client is the
    Graph alert mirror over a `GraphClient`, its syncs dated by the stepped clock too.
    """
    settings = load_settings({"BOT_STATE_URL": MEMORY_STATE_URL, "DEFENDER_API": api})
    runtime = build_runtime(settings, tenant=defender.tenant)
    runtime.client.close()
    client: AlertSource
    timeout = httpx.Timeout(read_timeout, connect=5.0)
    tokens = tokens or StaticTokenProvider("fault-runs")
    if api == "graph":
        graph = GraphClient(
            defender.base_url, tokens, gate=runtime.budget, timeout=timeout, clock=clock, sleep=clock.advance
        )
        client = GraphAlertSource(graph, now=clock.wall, backfill=settings.defender.graph_backfill)
    else:
        client = DefenderClient(
            defender.base_url, tokens, gate=runtime.budget, timeout=timeout, clock=clock, sleep=clock.advance
        )
    runtime = with_alert_source(runtime, client, clock)
    slack = load_slack_settings(SlackMode.HTTP, {**slack_env(standin), **BOT_ENV})
    return build_slack_bot(runtime, slack)


@dataclass
class FaultRig:
    rig: Harness
    defender: DefenderServer
    clock: SteppedClock
    names: Iterator[int] = field(default_factory=lambda: iter(range(1, 10_000)))

    @property
    def bot(self) -> SlackBot:
        return self.rig.bot

    @property
    def standin(self) -> SlackStandIn:
        return self.rig.standin

    def mid(self, hostname: str) -> str:
        return machine_id(self.defender.tenant, hostname)

    def ask(self, text: str) -> Posted:
        """A slash command; the answer that reaches its response_url (the ack must be the usual note)."""
        return ask(self.rig, text, f"r{next(self.names)}")

    def add_alert(self, hostname: str, title: str) -> str:
        return str(self.defender.tenant.add_alert(self.mid(hostname), title=title, severity="High")["id"])


@contextlib.contextmanager
def fault_rig(
    *,
    tokens: TokenProvider | None = None,
    read_timeout: float = READ_TIMEOUT,
    tenant: SimulatedTenant | None = None,
    api: str = "mde",
) -> Iterator[FaultRig]:
    defender = DefenderServer(tenant or SimulatedTenant())
    standin = SlackStandIn()
    clock = SteppedClock()
    try:
        bot = fault_bot(standin, defender, clock, tokens=tokens, read_timeout=read_timeout, api=api)
    except BaseException:
        close_soon(standin)
        defender.close()
        raise
    rig = Harness(standin, bot, SlackRequests(SIGNING_SECRET))
    try:
        yield FaultRig(rig, defender, clock)
    finally:
        defender.clear()
        rig.close()
        defender.close()


@pytest.fixture(autouse=True)
def _loopback_without_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx and requests reach the local doubles directly, whatever proxy the machine has configured."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Check 1: the bot logs no ERROR (an unhandled exception in a listener or job is logged at ERROR)."""
    caplog.set_level(logging.INFO)
    yield
    errors = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith(("bot", "slack_bolt"))
    ]
    assert errors == []


# -- looking at what Slack received ----------------------------------------------------------------------------


def wait_for_target(rig: Harness | SlackStandIn, target: str, timeout: float = 15.0) -> Posted:
    """The one message that reached the response_url named `target`."""
    standin = rig if isinstance(rig, SlackStandIn) else rig.standin
    deadline = time.monotonic() + timeout
    while True:
        found = [p for p in standin.posts if p.target == target]
        if found:
            assert len(found) == 1, found
            return found[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing reached {target}")
        time.sleep(0.01)


def ask(rig: Harness, text: str, name: str) -> Posted:
    ack = ack_json(rig.command(text, name))
    assert ack["text"] == f"Looking up {text}…", ack
    return wait_for_target(rig, name)


def start_watch(rig: Harness, device: str, name: str = "w1") -> Posted:
    """`watch <device>`: returns the confirmation sent to its response_url (root card and note are in the channel)."""
    ack = ack_json(rig.command(f"watch {device}", name))
    assert ack["text"] == f"Setting up a watch on {device}…", ack
    return wait_for_target(rig, name)


def reference(posted: Posted) -> str | None:
    """The follow-up reference of a reply in a watch's thread (root cards carry one too, but are not replies)."""
    if not posted.payload.get("thread_ts"):
        return None
    payload = (posted.payload.get("metadata") or {}).get("event_payload") or {}
    value = payload.get("reference")
    return str(value) if value is not None else None


def followups(rig: Harness) -> list[Posted]:
    return [p for p in rig.standin.posts if p.via == "chat.postMessage" and reference(p) is not None]


def root_cards(rig: Harness, hostname: str) -> list[Posted]:
    """Top-level watch cards for a device (device cards posted with chat.postMessage outside any thread)."""
    return root_cards_in(rig.standin, hostname)


def root_cards_in(standin: SlackStandIn, hostname: str) -> list[Posted]:
    return [
        p
        for p in standin.posts
        if p.via == "chat.postMessage"
        and not p.payload.get("thread_ts")
        and p.payload.get("blocks")
        and header(p).startswith(f"{hostname} · ")
    ]


def root_updates(rig: Harness) -> list[Posted]:
    return [p for p in rig.standin.posts if p.via == "chat.update"]


def assert_posted_once(rig: Harness, alert_ids: list[str]) -> None:
    """Check 3: one follow-up per check reference, every change in exactly one of them, nothing pending."""
    replies = followups(rig)
    counts = Counter(reference(p) for p in replies)
    assert counts and set(counts.values()) == {1}, counts
    text = "".join(json.dumps(p.payload.get("blocks")) for p in replies)
    for alert_id in alert_ids:
        assert text.count(alert_id) == 1, alert_id
    assert rig.bot.store.pending_replies() == []


def assert_no_oops(rig: Harness) -> None:
    for posted in rig.standin.posts:
        assert "Something went wrong" not in all_text(posted.payload), posted.payload


def freshness(card: Posted) -> str:
    """The card's context line about the age of its data."""
    lines = [e["text"] for b in card.payload["blocks"] if b["type"] == "context" for e in b["elements"]]
    [line] = [t for t in lines if t.startswith((":warning: stale", "as of"))]
    return line


# -- Defender faults -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DefenderCase:
    fault: Fault
    logged: str  # what the operator reads in the log: proof that this fault, and not another, was met
    summary: str  # the problem card's first line for a device not in the cache
    hint: str
    stale: str  # why a cached device's card is marked stale


GAVE_UP = "(gave up after 3 attempts)"
DEFENDER_CASES = {
    "500-repeated": DefenderCase(Fault("status", 500), f"Defender answered 500 {GAVE_UP}", *UNAVAILABLE),
    "503-repeated": DefenderCase(Fault("status", 503), f"Defender answered 503 {GAVE_UP}", *UNAVAILABLE),
    "read-timeout": DefenderCase(Fault("timeout"), f"ReadTimeout talking to Defender {GAVE_UP}", *UNAVAILABLE),
    "connection-refused": DefenderCase(Fault("refused"), f"ConnectError talking to Defender {GAVE_UP}", *UNAVAILABLE),
    "connection-dropped-mid-body": DefenderCase(
        Fault("dropped"), f"RemoteProtocolError talking to Defender {GAVE_UP}", *UNAVAILABLE
    ),
    "429-with-retry-after": DefenderCase(
        Fault("status", 429, retry_after="30"),
        "answered 429 TooManyRequests",
        THROTTLED,
        "Try again in 30 s.",
        "Defender throttled",
    ),
    "429-without-retry-after": DefenderCase(
        Fault("status", 429), "answered 429 TooManyRequests", THROTTLED, "Try again in 60 s.", "Defender throttled"
    ),
    "401-every-token": DefenderCase(
        Fault("status", 401), "Defender rejected the app's token", *SIGN_IN, "Defender sign-in failed"
    ),
    "malformed-json": DefenderCase(Fault("malformed"), "Defender's answer is not valid JSON", *BAD_ANSWER),
    "truncated-json": DefenderCase(Fault("truncated"), "Defender's answer is not valid JSON", *BAD_ANSWER),
}


# Through Microsoft Graph: the faults its answers can carry (errors, throttling, timeouts, a rejected token).
# The transport-level and body faults (refused, dropped, malformed, truncated) are left to the MDE runs: both
# clients meet them in the one `ApiSession` they share, before anything API-specific reads the answer.
GRAPH_CASES = ("500-repeated", "503-repeated", "read-timeout", "429-with-retry-after", "401-every-token")
SERVICES = {"mde": "Defender", "graph": "Microsoft Graph"}  # how the log names the API


@pytest.mark.parametrize(
    ("api", "case"),
    [pytest.param("mde", case, id=f"mde-{name}") for name, case in DEFENDER_CASES.items()]
    + [pytest.param("graph", DEFENDER_CASES[name], id=f"graph-{name}") for name in GRAPH_CASES],
)
def test_fault_defender(api: str, case: DefenderCase, caplog: pytest.LogCaptureFixture, no_errors_logged: None) -> None:
    """A lookup of a cached device, a lookup of a new one and a watch check, during the fault and after it."""
    with fault_rig(api=api) as f:
        rig = f.rig
        start_watch(rig, "ws-fin-014")
        assert f.bot.poller.run_once().ran
        alert_id = f.add_alert(FIN_014, "Fault-run alert")
        f.clock.advance(120)  # the cached list of ws-fin-014 is past its 60 s TTL, still within the 15 min kept

        f.defender.inject(case.fault)
        stale = f.ask("ws-fin-014")
        assert header(stale).startswith(f"{FIN_014} · ")
        assert freshness(stale).startswith(f":warning: stale: {case.stale}, data from 2 min ago"), freshness(stale)
        problem = f.ask("ws-fin-015")
        assert problem.payload["text"] == case.summary
        assert case.hint in all_text(problem.payload)
        assert case.logged.replace("Defender", SERVICES[api]) in caplog.text
        if api == "graph":  # the lookups went through Graph: hunting for the device, no Defender for Endpoint call
            assert f.defender.log.of("graph-hunting")
            assert not f.defender.log.of("machine-alerts") and not f.defender.log.of("machine")
        for detail in ("Injected fault", "127.0.0.1", "Traceback", "gave up", "attempts"):
            assert detail not in all_text(problem.payload)  # operator detail stays in the log
        updates_before = len(root_updates(rig))
        report = f.bot.poller.run_once()
        assert (report.ran, report.defender_calls, report.changes, report.posted) == (True, 0, 0, 0)
        assert followups(rig) == []
        badge = watch_badge(root_updates(rig)[updates_before:][-1])
        assert ":hourglass: Checks slowed to every 2 min" in badge  # the root card says checks are slowed

        f.defender.clear()
        f.clock.advance(61)  # past any Retry-After the client is honouring
        assert "stale" not in freshness(f.ask("ws-fin-015"))
        assert "stale" not in freshness(f.ask("ws-fin-014"))
        report = f.bot.poller.run_once()
        assert (report.changes, report.posted, report.note) == (1, 1, None)
        assert f.bot.poller.run_once().posted == 0
        assert_posted_once(rig, [alert_id])
        assert len(root_cards(rig, FIN_014)) == 1
        assert_no_oops(rig)


def watch_badge(card: Posted) -> str:
    lines = [e["text"] for b in card.payload["blocks"] if b["type"] == "context" for e in b["elements"]]
    [badge] = [t for t in lines if t.startswith(":eyes: Watched by")]
    return badge


def test_fault_defender_outage_is_not_reported_as_a_tight_budget() -> None:
    with fault_rig() as f:
        start_watch(f.rig, "ws-fin-014")
        f.bot.poller.run_once()
        f.defender.inject(Fault("status", 500))
        before = len(root_updates(f.rig))
        f.bot.poller.run_once()
        badge = watch_badge(root_updates(f.rig)[before:][-1])
        assert "call budget is tight" not in badge, badge
        assert badge.endswith("Checks slowed to every 2 min: Defender is not answering properly."), badge


def test_fault_defender_slow_answers(no_errors_logged: None) -> None:
    """Scaled 1:20: Defender answers in 0.5 s under a 1 s read timeout (10 s under 20 s in production)."""
    with fault_rig(read_timeout=1.0) as f:
        rig = f.rig
        start_watch(rig, "ws-fin-014")
        f.bot.poller.run_once()
        alert_id = f.add_alert(FIN_014, "Slow-run alert")
        f.clock.advance(120)
        f.defender.inject(Fault("slow", delay=0.5))

        acks = []
        for text, name in (("ws-fin-014", "slow-1"), ("ws-fin-015", "slow-2")):
            began = time.monotonic()
            assert ack_json(rig.command(text, name))["text"] == f"Looking up {text}…"
            acks.append(time.monotonic() - began)
        assert max(acks) < 1.0  # acknowledged at once: the slow calls run on the pool
        for name, host in (("slow-1", FIN_014), ("slow-2", FIN_015)):
            card = wait_for_target(rig, name)
            assert header(card).startswith(f"{host} · ")
            assert "fresh from Defender" in freshness(card)
        report = f.bot.poller.run_once()
        assert (report.defender_calls, report.changes, report.posted, report.note) == (1, 1, 1, None)
        f.defender.clear()
        assert f.bot.poller.run_once().posted == 0
        assert_posted_once(rig, [alert_id])
        assert_no_oops(rig)


def msal_tokens(authority: str, scope: str = SCOPE) -> MsalTokenProvider:
    return MsalTokenProvider(
        authority=authority,
        client_id=CLIENT_ID,
        credential=fake_secrets.DEFENDER_CLIENT_SECRET,
        scope=scope,
        instance_discovery=False,  # MSAL would ask login.microsoftonline.com about 127.0.0.1
        timeout=5.0,
    )


@pytest.mark.parametrize("api", ["mde", "graph"])
def test_fault_defender_401_mid_run_token_revoked(
    api: str, monkeypatch: pytest.MonkeyPatch, no_errors_logged: None
) -> None:
    """Defender stops accepting the token in use: the bot gets a new one and nobody notices."""
    with OidcDouble() as idp:
        trust(monkeypatch, idp.ca_bundle_path)
        scope = GRAPH_SCOPE if api == "graph" else SCOPE
        with fault_rig(tokens=msal_tokens(idp.authority, scope), api=api) as f:
            rig = f.rig
            start_watch(rig, "ws-fin-014")
            f.bot.poller.run_once()
            assert idp.token_requests == 1
            alert_id = f.add_alert(FIN_014, "After the revocation")
            f.clock.advance(120)
            f.defender.revoked.add(idp.issued_tokens[0])

            card = f.ask("ws-fin-014")
            assert "fresh from Defender" in freshness(card)
            assert (f.defender.rejected, idp.token_requests) == (1, 2)
            assert f.defender.tokens == idp.issued_tokens  # the old token once, then the new one
            report = f.bot.poller.run_once()
            assert (report.changes, report.posted) == (1, 1)
            assert f.bot.poller.run_once().posted == 0
            assert_posted_once(rig, [alert_id])
            assert_no_oops(rig)


def test_fault_token_endpoint_down_at_start_up(monkeypatch: pytest.MonkeyPatch, no_errors_logged: None) -> None:
    """The identity provider is unreachable when the bot starts: it starts anyway, says so, and recovers."""
    port, tenant = free_port(), str(uuid.uuid4())
    with fault_rig(tokens=msal_tokens(f"https://127.0.0.1:{port}/{tenant}")) as f:
        rig = f.rig
        assert f.bot.health()["status"] == "ok"
        problem = f.ask("ws-fin-014")
        assert problem.payload["text"] == UNAVAILABLE[0]
        assert UNAVAILABLE[1] in all_text(problem.payload)
        refused = start_watch(rig, "ws-fin-015")
        assert refused.payload["text"] == UNAVAILABLE[0]  # no watch was started, and the person is told why
        assert ack_json(rig.command("watches", "list"))["text"] == "No watches in this channel"
        assert f.defender.requests == 0

        with OidcDouble(port=port, tenant=tenant) as idp:
            trust(monkeypatch, idp.ca_bundle_path)
            assert header(f.ask("ws-fin-014")).startswith(f"{FIN_014} · ")
            confirmation = start_watch(rig, "ws-fin-015", "w2")
            assert confirmation.payload["text"].startswith(f"Watching {FIN_015} until ")
            f.bot.poller.run_once()
            alert_id = f.add_alert(FIN_015, "Once the sign-in works")
            assert f.bot.poller.run_once().posted == 1
            assert f.bot.poller.run_once().posted == 0
            assert idp.token_requests == 1
        assert_posted_once(rig, [alert_id])
        assert len(root_cards(rig, FIN_015)) == 1
        assert_no_oops(rig)


def test_fault_token_endpoint_down_mid_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_errors_logged: None
) -> None:
    """The identity provider goes away: the cached token keeps working; once it must be renewed, lookups say
    Defender cannot be reached (cached data shown stale), the watch holds its change, and all recovers."""
    ca = trustme.CA()  # one CA for both lives of the identity provider
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    trust(monkeypatch, str(bundle))
    idp = OidcDouble(ca=ca)
    try:
        with fault_rig(tokens=msal_tokens(idp.authority)) as f:
            rig = f.rig
            start_watch(rig, "ws-fin-014")
            f.bot.poller.run_once()
            idp.stop()

            f.clock.advance(120)
            assert "fresh from Defender" in freshness(f.ask("ws-fin-015"))  # the cached token needs no provider
            alert_id = f.add_alert(FIN_014, "While sign-in is down")
            f.defender.revoked.add(idp.issued_tokens[0])  # the token must now be renewed
            stale = f.ask("ws-fin-014")
            assert freshness(stale).startswith(f":warning: stale: {UNAVAILABLE[2]}, data from 2 min ago")
            problem = f.ask("ws-eng-101")
            assert problem.payload["text"] == UNAVAILABLE[0]
            report = f.bot.poller.run_once()
            assert (report.changes, report.posted) == (0, 0)

            with OidcDouble(port=idp.port, tenant=idp.tenant, ca=ca) as back:
                assert header(f.ask("ws-eng-101")).startswith(f"{ENG_101} · ")
                report = f.bot.poller.run_once()
                assert (report.changes, report.posted) == (1, 1)
                assert f.bot.poller.run_once().posted == 0
                assert back.token_requests == 1
            assert_posted_once(rig, [alert_id])
            assert_no_oops(rig)
    finally:
        idp.stop()


# -- Slack faults ----------------------------------------------------------------------------------------------


@pytest.fixture
def rig() -> Iterator[Harness]:
    yield from harness(env=BOT_ENV)


def test_fault_slack_429_on_post_message_for_a_watch(
    rig: Harness, slack_sleeps: list[float], no_errors_logged: None
) -> None:
    """429 with Retry-After on the root card and on a follow-up: waited out, each posted once."""
    rig.standin.fail_next("chat.postMessage", status=429, error="ratelimited", retry_after=1)
    confirmation = start_watch(rig, "ws-fin-014")
    assert confirmation.payload["text"].startswith(f"Watching {FIN_014} until ")
    assert len(slack_sleeps) == 1 and slack_sleeps[0] >= 1.0  # Retry-After waited out (the SDK adds jitter)
    rig.bot.poller.run_once()
    alert_id = str(rig.tenant.add_alert(machine_id(rig.tenant, FIN_014), title="Rate-limited")["id"])
    rig.standin.fail_next("chat.postMessage", status=429, error="ratelimited", retry_after=1)
    report = rig.bot.poller.run_once()
    assert (report.changes, report.posted, report.pending) == (1, 1, 0)
    assert len(slack_sleeps) == 2 and slack_sleeps[1] >= 1.0
    assert rig.bot.poller.run_once().posted == 0
    assert len(root_cards(rig, FIN_014)) == 1
    assert_posted_once(rig, [alert_id])


def test_fault_slack_5xx_beyond_retries(
    rig: Harness, slack_sleeps: list[float], caplog: pytest.LogCaptureFixture, no_errors_logged: None
) -> None:
    """5xx past the SDK's two retries: on a response_url the answer is lost and logged; on a watch's root card the
    person is told the card could not be posted and no half-made watch is left; the bot keeps serving."""
    rig.standin.fail_next("response_url", status=503, times=3)
    assert ack_json(rig.command("ws-fin-014", "lost"))["text"] == "Looking up ws-fin-014…"
    rig.wait_idle()
    assert [p for p in rig.standin.posts if p.target == "lost"] == []
    assert "response_url answered 503 " in caplog.text  # the loss is in the log

    rig.standin.fail_next("chat.postMessage", status=503, error="service_unavailable", times=3)
    refused = start_watch(rig, "ws-fin-014")
    assert refused.payload["text"] == "Could not post the watch card here: Slack answered service_unavailable."
    assert ack_json(rig.command("watches", "list"))["text"] == "No watches in this channel"

    confirmation = start_watch(rig, "ws-fin-014", "w2")  # trying again works
    assert confirmation.payload["text"].startswith(f"Watching {FIN_014} until ")
    assert len(root_cards(rig, FIN_014)) == 1
    assert [w.root_ts is not None for w in rig.bot.store.live_watches(CHANNEL)] == [True]
    assert header(ask(rig, "ws-fin-015", "after")).startswith(f"{FIN_015} · ")
    assert len(slack_sleeps) == 4  # two retries for each of the two failures


def test_fault_slack_response_url_expired_during_watch(
    rig: Harness, caplog: pytest.LogCaptureFixture, no_errors_logged: None
) -> None:
    """The confirmation of `watch` cannot be delivered (404): the watch itself is made once and reports once."""
    rig.standin.expire("w1")
    assert ack_json(rig.command("watch ws-fin-014", "w1"))["text"] == "Setting up a watch on ws-fin-014…"
    rig.standin.wait_for_posts(2)  # the root card and the thread note
    rig.wait_idle()
    assert "response_url answered 404 expired_url" in caplog.text
    listing = ack_json(rig.command("watches", "list"))
    assert listing["text"] == "1 watch in this channel"
    rig.bot.poller.run_once()
    alert_id = str(rig.tenant.add_alert(machine_id(rig.tenant, FIN_014), title="After the 404")["id"])
    assert rig.bot.poller.run_once().posted == 1
    assert rig.bot.poller.run_once().posted == 0
    assert len(root_cards(rig, FIN_014)) == 1
    assert_posted_once(rig, [alert_id])


def test_fault_slack_channel_not_found_on_a_follow_up(rig: Harness, no_errors_logged: None) -> None:
    """Slack refuses a follow-up with channel_not_found: the watch pauses and says why, keeps checking, and posts
    what it held back exactly once when it is started again."""
    start_watch(rig, "ws-fin-014")
    rig.bot.poller.run_once()
    mid = machine_id(rig.tenant, FIN_014)
    first = str(rig.tenant.add_alert(mid, title="Before the channel went")["id"])
    rig.standin.fail_next("chat.postMessage", error="channel_not_found")
    report = rig.bot.poller.run_once()
    assert (report.changes, report.posted, report.pending) == (1, 0, 1)
    [watch] = rig.bot.store.live_watches(CHANNEL)
    assert (watch.status, watch.pause_reason) == (WatchStatus.PAUSED, "the channel is gone or the bot cannot see it")
    listing = json.dumps(ack_json(rig.command("watches", "list")), ensure_ascii=False)
    assert "paused: the channel is gone or the bot cannot see it" in listing

    second = str(rig.tenant.add_alert(mid, title="While paused")["id"])
    posts = sum(m == "chat.postMessage" for m, _ in rig.standin.calls)
    report = rig.bot.poller.run_once()
    assert (report.changes, report.posted, report.pending) == (1, 0, 2)  # still checked, nothing posted
    assert sum(m == "chat.postMessage" for m, _ in rig.standin.calls) == posts

    start_watch(rig, "ws-fin-014", "again")  # the bot was let back in
    assert rig.bot.poller.run_once(check=False).posted == 2
    assert rig.bot.poller.run_once().posted == 0
    assert len(root_cards(rig, FIN_014)) == 1
    assert_posted_once(rig, [first, second])


def test_fault_kill_between_root_card_and_saving_it_posts_one_root_card(tmp_path: Path) -> None:
    standin = SlackStandIn()
    state = f"sqlite:///{tmp_path}/watches.db"
    tenant = SimulatedTenant()
    try:
        first = bot_process(standin, tenant, state)
        real = first.bot.store.set_root

        def die(*_: Any) -> None:
            raise Crash("after chat.postMessage, before set_root")

        first.bot.store.set_root = die  # type: ignore[method-assign]
        first.command("watch ws-fin-014", "w1")
        first.standin.wait_for_posts(1)
        first.wait_idle()
        first.bot.store.set_root = real  # type: ignore[method-assign]
        first.bot.close()  # the dead process: nothing of it is used again

        second = bot_process(standin, tenant, state)
        try:
            start_watch(second, "ws-fin-014", "w2")
            assert len(root_cards(second, FIN_014)) == 1
        finally:
            second.bot.close()
    finally:
        close_soon(standin)


def test_fault_kill_before_the_root_ts_is_saved_is_repaired_by_the_poller(tmp_path: Path) -> None:
    """Nobody runs `watch` again: the next check adopts the card and its follow-up goes into that card's thread."""
    standin = SlackStandIn()
    state = f"sqlite:///{tmp_path}/watches.db"
    tenant = SimulatedTenant()
    try:
        first = bot_process(standin, tenant, state)

        def die(*_: Any) -> None:
            raise Crash("after chat.postMessage, before set_root")

        first.bot.store.set_root = die  # type: ignore[method-assign]
        first.command("watch ws-fin-014", "w1")
        first.standin.wait_for_posts(1)
        first.wait_idle()
        first.bot.close()

        second = bot_process(standin, tenant, state)
        try:
            [watch] = second.bot.store.live_watches()
            assert watch.root_ts is None
            second.bot.poller.run_once()
            [root] = root_cards(second, FIN_014)
            alert_id = str(tenant.add_alert(watch.machine_id, title="After the crash", severity="High")["id"])
            assert second.bot.poller.run_once().posted == 1
            replies = [p for p in standin.posts if p.payload.get("thread_ts") == root.payload["ts"]]
            assert any(alert_id in json.dumps(p.payload) or "After the crash" in json.dumps(p.payload) for p in replies)
            assert len(root_cards(second, FIN_014)) == 1
        finally:
            second.bot.close()
    finally:
        close_soon(standin)


def bot_process(standin: SlackStandIn, tenant: SimulatedTenant, state_url: str) -> Harness:
    """One bot "process" on a shared Slack, Defender and state file (the caller closes its bot)."""
    settings = load_settings({"BOT_STATE_URL": state_url})
    slack = load_slack_settings(SlackMode.HTTP, {**slack_env(standin), **BOT_ENV})
    bot = build_slack_bot(build_runtime(settings, tenant=tenant), slack)
    return Harness(standin, bot, SlackRequests(SIGNING_SECRET))


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], BotProcess]]:
    """Start `python -m bot http` processes, each serving before the test goes on; stopped at the end."""
    bots = BotProcesses(tmp_path)

    def start(env: dict[str, str]) -> BotProcess:
        process = bots.start(bot_command("http"), env, port=free_port())
        wait_until(process.healthy, 30, "/healthz", [process])
        return process

    yield start
    bots.stop()


def send(process: BotProcess, request: tuple[bytes, dict[str, str]], client: httpx.Client) -> dict[str, Any]:
    body, headers = request
    response = client.post(f"{process.url}/slack/events", content=body, headers=headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_fault_token_endpoint_down_when_the_process_starts(
    tmp_path: Path, processes: Callable[[dict[str, str]], BotProcess]
) -> None:
    """`python -m bot http` against a real-tenant configuration whose identity provider is down: the process
    starts and serves, a lookup says Defender cannot be reached, and once the provider is up it answers."""
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    port, tenant_id = free_port(), str(uuid.uuid4())
    standin = SlackStandIn()
    defender = DefenderServer(SimulatedTenant())
    try:
        env = {
            **slack_env(standin),
            **BOT_ENV,
            "BOT_STATE_URL": f"sqlite:///{tmp_path}/state.db",
            "DEFENDER_TENANT_ID": tenant_id,
            "DEFENDER_CLIENT_ID": CLIENT_ID,
            "DEFENDER_CLIENT_SECRET": fake_secrets.DEFENDER_CLIENT_SECRET,
            "DEFENDER_AUTHORITY_URL": f"https://127.0.0.1:{port}",
            "DEFENDER_API_URL": defender.base_url,
            "REQUESTS_CA_BUNDLE": str(bundle),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        process = processes(env)
        health = httpx.get(f"{process.url}/healthz", timeout=5.0).json()
        assert (health["status"], health["defender_backend"]) == ("ok", "api")
        requests = SlackRequests(SIGNING_SECRET)
        with httpx.Client(timeout=10.0) as client:
            ack = send(process, requests.command("ws-fin-014", response_url=standin.response_url("down")), client)
            assert ack["text"] == "Looking up ws-fin-014…"
            problem = wait_for_target(standin, "down")
            assert problem.payload["text"] == UNAVAILABLE[0]
            # Without a token nothing was asked of Defender: at most the start-up connection probe, which carries none.
            assert defender.tokens == [] and defender.requests <= 1
            with OidcDouble(port=port, tenant=tenant_id, ca=ca) as idp:
                ack = send(process, requests.command("ws-fin-014", response_url=standin.response_url("up")), client)
                assert header(wait_for_target(standin, "up")).startswith(f"{FIN_014} · ")
                assert idp.token_requests == 1
        assert "Traceback" not in process.stderr
        assert fake_secrets.DEFENDER_CLIENT_SECRET not in process.stderr
    finally:
        defender.close()
        close_soon(standin)


BURST_WATCHES = ("ws-fin-015", "ws-eng-101", "srv-sql-02")
BURST_LOOKUPS = ("ws-fin-014", "ws-fin-015", "ws-eng-101", "srv-sql-02", "srv-dc-01", "lt-hr-031", "ws-kiosk-03")


def test_fault_kill_9_during_a_burst_of_commands(
    tmp_path: Path, processes: Callable[[dict[str, str]], BotProcess]
) -> None:
    """kill -9 while a burst of lookups and watches is in flight; the restarted bot answers every command the
    killed one acknowledged, its store is intact, the watch made before the burst is still there once, and each
    device watched in the burst has one watch.

    A command can be answered without its acknowledgement reaching Slack: the work starts on the pool before Bolt
    writes the acknowledgement, and the kill can land in between (a lookup the simulator answers in a millisecond
    is posted first). So an answered command was received, not necessarily acknowledged."""
    standin = SlackStandIn()
    try:
        db = tmp_path / "state.db"
        env = {
            **slack_env(standin),
            **BOT_ENV,
            "DEFENDER_BACKEND": "simulator",  # a server serves the simulator only when asked to
            "BOT_STATE_URL": f"sqlite:///{db}",
            "BOT_USER_RATE_PER_MINUTE": "0",  # the burst is one person's: no per-person limit in the way
            "BOT_CHANNEL_RATE_PER_MINUTE": "0",
            "BOT_TAKEOVER_SECONDS": "1",  # the restarted process answers what the killed one left after 1 s
        }
        requests = SlackRequests(SIGNING_SECRET)
        first = processes(env)
        with httpx.Client(timeout=10.0) as client:
            ack = send(first, requests.command("watch ws-fin-014", response_url=standin.response_url("w0")), client)
            assert ack["text"] == "Setting up a watch on ws-fin-014…"
            standin.wait_for_posts(3)  # root card, thread note, confirmation

        texts = [f"watch {d}" for d in BURST_WATCHES] * 2 + list(BURST_LOOKUPS) * 4
        burst = [requests.command(t, response_url=standin.response_url(f"b{i}")) for i, t in enumerate(texts)]
        outcome = send_burst(first, burst, after_acks=8, mid_burst=lambda: first.popen.send_signal(signal.SIGKILL))
        assert first.popen.wait(timeout=10) == -signal.SIGKILL
        acked = set(outcome.acks)
        assert acked  # the kill came during the burst, not before it
        assert acked | outcome.unanswered == set(range(len(burst)))
        lookups = {i for i, t in enumerate(texts) if not t.startswith("watch")}
        left = left_in_the_file(db)  # what the restarted process will answer, and nothing else

        second = processes(env)  # a new process on the same state file answers what the killed one left
        wait_until(
            lambda: acked <= set(answers_by_request(standin)), 30, "every acknowledged command answered", [second]
        )
        wait_until(lambda: read_state(db, "SELECT count(*) FROM accepted_work") == [(0,)], 30, "records", [second])
        answers = answers_by_request(standin)
        assert left <= set(answers)
        # At least once: an answer posted as the kill landed, before its record was deleted, is posted again by
        # the restarted process. Nothing else is: a command whose record was gone is never answered again.
        assert {i for i, n in answers.items() if n > 1} <= left
        assert set(answers.values()) <= {1, 2}
        for post in standin.posts:
            if post.target.startswith("b") and int(post.target[1:]) in lookups:
                assert header(post).startswith(texts[int(post.target[1:])])  # a card, never "Something went wrong"
        print(
            f"\nkill -9 during a burst of {len(burst)} ({len(burst) - len(lookups)} watch, {len(lookups)} lookups): "
            f"{len(acked)} acknowledged ({len(acked - lookups)} watch, {len(acked & lookups)} lookups), "
            f"{len(outcome.unanswered)} never acknowledged; {len(left)} left in the state file "
            f"({len(left - acked)} of them never acknowledged); after the restart every acknowledged command "
            f"answered, {sum(n - 1 for n in answers.values())} twice"
        )

        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as check:
            assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            cardless = check.execute("SELECT count(*) FROM watches WHERE status = 'active' AND root_ts IS NULL")
            print(f"live watches left without a root card by the kill: {cardless.fetchone()[0]}")
        with httpx.Client(timeout=10.0) as client:
            listing = send(second, requests.command("watches", response_url=standin.response_url("l1")), client)
            assert json.dumps(listing).count(FIN_014) == 1  # the watch from before the burst, once
            for device in BURST_WATCHES:  # whatever the burst left, watching again gives one watch per device
                confirmation = f"c-{device}"
                ack = send(
                    second, requests.command(f"watch {device}", response_url=standin.response_url(confirmation)), client
                )
                assert ack["text"] == f"Setting up a watch on {device}…"
            for device in BURST_WATCHES:
                assert wait_for_target(standin, f"c-{device}").payload["text"].startswith("Watching ")
            ack = send(second, requests.command("ws-fin-014", response_url=standin.response_url("after")), client)
            assert ack["text"] == "Looking up ws-fin-014…"
            assert header(wait_for_target(standin, "after")).startswith(f"{FIN_014} · ")
            health = httpx.get(f"{second.url}/healthz", timeout=5.0).json()
            assert health["watches"]["live"] == 1 + len(BURST_WATCHES)

        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as check:
            rows = check.execute("SELECT machine_id, root_ts FROM watches WHERE status != 'ended'").fetchall()
        assert len(rows) == 1 + len(BURST_WATCHES)
        assert len({machine for machine, _ in rows}) == len(rows)  # one live watch per device
        root_ts = {str(p.payload.get("ts")) for p in standin.posts if p.via == "chat.postMessage"}
        assert all(ts in root_ts for _, ts in rows)  # each has a root card Slack received
        extra = sum(max(0, len(root_cards_in(standin, host)) - 1) for host in (FIN_015, ENG_101, SQL_02))
        assert extra == 0  # a card posted just before the kill is adopted, not posted again
        assert "Traceback" not in second.stderr
    finally:
        close_soon(standin)


# -- stopping and restarting: SIGTERM, SIGINT, a drain that runs out, kill -9 on Redis ----------------------------

RESTART_DEVICES = ("ws-fin-014", "ws-fin-015", "ws-eng-101", "srv-sql-02", "srv-dc-01", "lt-hr-031", "ws-kiosk-03")


def slow_bot_env(standin: SlackStandIn, state_url: str, **extra: str) -> dict[str, str]:
    """A server on the simulator served by the test (`--defender-url`), one person's burst not rate-limited."""
    return {
        **slack_env(standin),
        **BOT_ENV,
        "PYTHONPATH": str(ROOT),
        "DEFENDER_BACKEND": "simulator",
        "BOT_STATE_URL": state_url,
        "BOT_USER_RATE_PER_MINUTE": "0",
        "BOT_CHANNEL_RATE_PER_MINUTE": "0",
        **extra,
    }


def read_state(db: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as check:
        return check.execute(query).fetchall()


def burst_requests_in(records: Iterable[str | bytes]) -> set[int]:
    """The burst requests (`b<index>`) whose acknowledged command is among these records, not yet answered."""
    names = [json.loads(record)["response_url"].split(RESPONSE_PATH, 1)[1] for record in records]
    return {int(name[1:]) for name in names if name.startswith("b")}


def left_in_the_file(db: Path) -> set[int]:
    return burst_requests_in(command for (command,) in read_state(db, "SELECT command FROM accepted_work"))


def lease_holders(db: Path) -> list[tuple[Any, ...]]:
    return read_state(db, "SELECT holder FROM lease WHERE name = 'poller'")


def lookups_burst(standin: SlackStandIn, copies: int = 4) -> tuple[list[str], list[tuple[bytes, dict[str, str]]]]:
    """Lookups of seven devices, `copies` of each, each with its own response_url `b<index>`."""
    requests = SlackRequests(SIGNING_SECRET)
    texts = list(RESTART_DEVICES) * copies
    return texts, [requests.command(t, response_url=standin.response_url(f"b{i}")) for i, t in enumerate(texts)]


def answers_by_request(standin: SlackStandIn) -> Counter[int]:
    """How many posts each burst request's response_url received."""
    return Counter(int(p.target[1:]) for p in standin.posts if p.target.startswith("b"))


def stop_line(process: BotProcess) -> str:
    [line] = [line for line in process.stderr.splitlines() if "stopped taking work" in line]
    return line


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_fault_stop_signal_during_a_burst_answers_every_acknowledged_lookup_once(
    tmp_path: Path, signal_name: str
) -> None:
    """SIGTERM (a deploy, Heroku's daily restart) or SIGINT while lookups wait on a slow Defender: each lookup
    acknowledged before the signal is answered exactly once with its card, a request after it is told the bot is
    restarting, the watch lease is released, and the process exits 0 with one line of counts."""
    standin = SlackStandIn()
    defender = DefenderServer(SimulatedTenant(latency=0.3), keep_alive=True)
    bots = BotProcesses(tmp_path)
    try:
        db = tmp_path / "state.db"
        command = bot_process_command("http", defender_url=defender.base_url, poll_seconds=1.0)
        process = bots.start(command, slow_bot_env(standin, f"sqlite:///{db}"), port=free_port())
        wait_until(process.healthy, 30, "/healthz", [process])
        wait_until(lambda: len(lease_holders(db)) == 1, 30, "the watch lease", [process])
        texts, requests = lookups_burst(standin)
        burst = send_burst(
            process, requests, after_acks=8, mid_burst=lambda: process.popen.send_signal(getattr(signal, signal_name))
        )
        assert process.popen.wait(timeout=60) == 0, process.stderr
        acknowledged = {i for i, ack in burst.acks.items() if ack["text"] == f"Looking up {texts[i]}…"}
        turned_away = burst.acked_with(RESTARTING)
        assert acknowledged  # the signal came during the burst
        assert acknowledged | turned_away == set(burst.acks)  # nothing else was said (no "busy")
        answers = answers_by_request(standin)
        assert set(answers) == acknowledged  # every acknowledged lookup answered; none that was turned away
        assert set(answers.values()) == {1}  # once each
        for post in standin.posts:
            if post.target.startswith("b"):
                assert header(post).startswith(texts[int(post.target[1:])])  # its card, no "Something went wrong"
        assert lease_holders(db) == []  # released: the next process's poller takes it at its first try
        assert read_state(db, "SELECT count(*) FROM accepted_work") == [(0,)]
        assert " 0 abandoned" in stop_line(process)
        assert "Traceback" not in process.stderr
        print(
            f"\n{signal_name} during a burst of {len(requests)} lookups: {len(acknowledged)} acknowledged and answered "
            f"once, {len(turned_away)} told the bot is restarting, {len(burst.unanswered)} refused; "
            f"{stop_line(process).split(': ', 1)[-1]}"
        )
    finally:
        bots.stop()
        defender.close()
        close_soon(standin)


def test_fault_drain_deadline_leaves_lookups_to_the_restarted_process(tmp_path: Path) -> None:
    """A drain that runs out (`BOT_DRAIN_SECONDS=0` against a Defender slower than that): the lookups left are kept
    in the state file, not answered with an error, and the restarted process answers each exactly once."""
    standin = SlackStandIn()
    defender = DefenderServer(SimulatedTenant(latency=1.0), keep_alive=True)
    bots = BotProcesses(tmp_path)
    try:
        db = tmp_path / "state.db"
        env = slow_bot_env(standin, f"sqlite:///{db}", BOT_DRAIN_SECONDS="0", BOT_TAKEOVER_SECONDS="1")
        command = bot_process_command("http", defender_url=defender.base_url)
        first = bots.start(command, env, port=free_port())
        wait_until(first.healthy, 30, "/healthz", [first])
        texts, requests = lookups_burst(standin, copies=2)
        burst = send_burst(first, requests, after_acks=len(requests), mid_burst=first.popen.terminate)
        assert first.popen.wait(timeout=60) == 0, first.stderr
        acknowledged = {i for i, ack in burst.acks.items() if ack["text"] == f"Looking up {texts[i]}…"}
        assert acknowledged
        kept = read_state(db, "SELECT count(*) FROM accepted_work")[0][0]
        assert kept > 0  # the drain ran out with lookups still waiting on Defender
        answered_by_first = set(answers_by_request(standin))

        second = bots.start(command, env, port=free_port())
        wait_until(lambda: set(answers_by_request(standin)) >= acknowledged, 60, "every lookup answered", [second])
        answers = answers_by_request(standin)
        assert set(answers) == acknowledged
        assert set(answers.values()) == {1}
        for post in standin.posts:
            if post.target.startswith("b"):
                assert header(post).startswith(texts[int(post.target[1:])])
        wait_until(lambda: read_state(db, "SELECT count(*) FROM accepted_work") == [(0,)], 10, "records gone", [second])
        assert "took over" in second.stderr
        assert "Traceback" not in first.stderr + second.stderr
        print(
            f"\ndrain deadline 0 s: {len(acknowledged)} acknowledged, {len(answered_by_first)} answered before exit, "
            f"{kept} kept in the state file and answered once by the restarted process"
        )
    finally:
        bots.stop()
        defender.close()
        close_soon(standin)


def mentions_and_dms(copies: int = 2) -> tuple[list[str], list[tuple[bytes, dict[str, str]]]]:
    """Mentions of seven devices (`copies` of each), each in its own thread (`ts` 1700000000.<index>), then one
    top-level DM per device: the events as Slack delivers them."""
    requests = SlackRequests(SIGNING_SECRET)
    texts = list(RESTART_DEVICES) * copies
    mentions = [requests.event(requests.mention(t, ts=f"1700000000.{i:06d}")) for i, t in enumerate(texts)]
    dm = {"type": "message", "channel": "D0ALICE", "channel_type": "im", "user": "U0ALICE"}
    dms = [
        requests.event({**dm, "text": device, "ts": f"1700000001.{i:06d}"}) for i, device in enumerate(RESTART_DEVICES)
    ]
    return texts + list(RESTART_DEVICES), mentions + dms


def answers_by_event(standin: SlackStandIn, texts: list[str]) -> Counter[int]:
    """How many answers each event of `mentions_and_dms` got: a mention's in its thread, a DM's in the DM (its
    card names the device, one DM per device)."""
    mentions = len(texts) - len(RESTART_DEVICES)
    counted: Counter[int] = Counter()
    for post in standin.posts:
        if post.via != "chat.postMessage":
            continue
        if post.target == CHANNEL and str(post.payload.get("thread_ts", "")).startswith("1700000000."):
            counted[int(str(post.payload["thread_ts"]).split(".")[1])] += 1
        elif post.target == "D0ALICE":
            counted[mentions + RESTART_DEVICES.index(header(post).split(".")[0])] += 1
    return counted


@pytest.mark.parametrize(("stop", "drain_seconds"), [("SIGKILL", "25"), ("SIGTERM", "0")])
def test_fault_stopped_with_mentions_and_dms_acknowledged_the_restarted_process_answers_each_in_its_thread(
    tmp_path: Path, stop: str, drain_seconds: str
) -> None:
    """Mentions and DMs are acknowledged (HTTP 200 to their events, which Slack then never delivers again) and
    answered later with chat.postMessage. kill -9, or SIGTERM with a drain that runs out at once, while they wait
    on a slow Defender: the restarted process on the same file answers every one in its thread (a DM in the DM),
    with its card; none is lost, and nobody is told to ask again."""
    standin = SlackStandIn()
    defender = DefenderServer(SimulatedTenant(latency=1.0), keep_alive=True)
    bots = BotProcesses(tmp_path)
    try:
        db = tmp_path / "state.db"
        env = slow_bot_env(standin, f"sqlite:///{db}", BOT_TAKEOVER_SECONDS="1", BOT_DRAIN_SECONDS=drain_seconds)
        command = bot_process_command("http", defender_url=defender.base_url)
        first = bots.start(command, env, port=free_port())
        wait_until(first.healthy, 30, "/healthz", [first])
        texts, events = mentions_and_dms()
        burst = send_burst(first, events, after_acks=len(events), mid_burst=lambda: None)
        assert set(burst.acks) == set(range(len(events)))  # every event acknowledged: Slack will not send it again
        first.popen.send_signal(getattr(signal, stop))
        assert first.popen.wait(timeout=30) == (-signal.SIGKILL if stop == "SIGKILL" else 0), first.stderr
        left = read_state(db, "SELECT count(*) FROM accepted_work")[0][0]
        assert left > 0  # the kill came while lookups waited on Defender
        answered_before = sum(answers_by_event(standin, texts).values())

        second = bots.start(command, env, port=free_port())
        everything = "every mention and DM answered"
        wait_until(lambda: set(answers_by_event(standin, texts)) == set(burst.acks), 60, everything, [second])
        wait_until(lambda: read_state(db, "SELECT count(*) FROM accepted_work") == [(0,)], 10, "records", [second])
        answers = answers_by_event(standin, texts)
        # At least once: an answer posted as the kill landed, before its record was deleted, comes twice.
        assert max(answers.values()) <= 2 and sum(n - 1 for n in answers.values()) <= left  # twice: posted at the kill
        for post in standin.posts:
            assert post.via == "chat.postMessage"  # the cards themselves, no ephemeral "ask again"
            assert header(post).split(".")[0] in RESTART_DEVICES  # its card, never "Something went wrong"
        assert "took over" in second.stderr
        assert "Traceback" not in first.stderr + second.stderr
        print(
            f"\n{stop} with {len(events)} mentions and DMs acknowledged ({len(events) - len(RESTART_DEVICES)} "
            f"mentions, {len(RESTART_DEVICES)} DMs): {answered_before} answered before it stopped, {left} left in the "
            f"state file; after the restart all {len(answers)} answered in their thread, "
            f"{sum(n - 1 for n in answers.values())} twice"
        )
    finally:
        bots.stop()
        defender.close()
        close_soon(standin)


@dataclass
class TwoOnRedis:
    """Two `python -m bot http` processes on one Redis prefix, Defender answering in 1 s: one to kill, one to live."""

    standin: SlackStandIn
    store: redis.Redis
    prefix: str
    doomed: BotProcess
    survivor: BotProcess


@contextlib.contextmanager
def two_on_redis(tmp_path: Path) -> Iterator[TwoOnRedis]:
    require_redis()
    prefix = unique_prefix()
    standin = SlackStandIn()
    defender = DefenderServer(SimulatedTenant(latency=1.0), keep_alive=True)
    bots = BotProcesses(tmp_path)
    store = redis.Redis.from_url(REDIS_URL)
    try:
        env = slow_bot_env(standin, url_with_prefix(prefix), BOT_PROCESSES="2", BOT_TAKEOVER_SECONDS="1")
        command = bot_process_command("http", defender_url=defender.base_url)
        doomed, survivor = (bots.start(command, env, port=free_port()) for _ in range(2))
        wait_until(lambda: doomed.healthy() and survivor.healthy(), 30, "two healthy bots", [doomed, survivor])
        yield TwoOnRedis(standin, store, prefix, doomed, survivor)
    finally:
        bots.stop()
        defender.close()
        close_soon(standin)
        store.close()
        delete_prefix(prefix)


def test_fault_kill_9_of_one_of_two_processes_on_redis_with_mentions_and_dms_acknowledged(tmp_path: Path) -> None:
    """Two processes on one Redis; the one that acknowledged a burst of mentions and DMs is SIGKILLed while they
    wait on a slow Defender. The survivor takes each over and answers it in its thread: once, or twice for one
    answered just as the kill landed, whose record was still kept."""
    with two_on_redis(tmp_path) as two:
        standin, store, prefix, doomed, survivor = two.standin, two.store, two.prefix, two.doomed, two.survivor
        texts, events = mentions_and_dms()
        burst = send_burst(doomed, events, after_acks=len(events), mid_burst=lambda: None)
        assert set(burst.acks) == set(range(len(events)))
        doomed.popen.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        assert doomed.popen.wait(timeout=10) == -signal.SIGKILL
        left = store.hlen(f"{prefix}:work:items")
        assert left > 0
        everything = "every mention and DM answered by the survivor"
        wait_until(lambda: set(answers_by_event(standin, texts)) == set(burst.acks), 60, everything, [survivor])
        taken_over = time.monotonic() - killed_at
        wait_until(lambda: store.hlen(f"{prefix}:work:items") == 0, 10, "records", [survivor])
        answers = answers_by_event(standin, texts)
        assert max(answers.values()) <= 2 and sum(n - 1 for n in answers.values()) <= left  # twice: posted at the kill
        for post in standin.posts:
            assert post.via == "chat.postMessage" and header(post).split(".")[0] in RESTART_DEVICES
        assert "took over" in survivor.stderr and "Traceback" not in survivor.stderr
        print(
            f"\nkill -9 of one of two processes on Redis with {len(events)} mentions and DMs acknowledged: {left} "
            f"left in Redis; the survivor answered all {len(answers)} in their thread {taken_over:.1f} s after the "
            f"kill, {sum(n - 1 for n in answers.values())} twice"
        )


def test_fault_kill_9_of_one_of_two_processes_on_redis(tmp_path: Path) -> None:
    """Two processes on one Redis; one is SIGKILLed while its acknowledged lookups wait on a slow Defender, holding
    the cluster's single-flight locks. The dead process's locks lapse within `LOCK_TTL` (no renewal comes), so the
    survivor's own lookups of the same devices are answered; and the survivor answers every lookup the dead one
    acknowledged, each once, through its response_url."""
    with two_on_redis(tmp_path) as two:
        standin, store, prefix, doomed, survivor = two.standin, two.store, two.prefix, two.doomed, two.survivor
        texts, requests = lookups_burst(standin, copies=2)
        burst = send_burst(doomed, requests, after_acks=len(requests), mid_burst=lambda: None)
        acknowledged = {i for i, ack in burst.acks.items() if ack["text"] == f"Looking up {texts[i]}…"}
        assert acknowledged == set(range(len(requests)))
        wait_until(lambda: bool(list(store.scan_iter(f"{prefix}:flight:*"))), 10, "a flight lock", [doomed])
        doomed.popen.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        assert doomed.popen.wait(timeout=10) == -signal.SIGKILL
        left = burst_requests_in(store.hvals(f"{prefix}:work:items"))  # what the survivor will answer
        lock_ttls = [store.pttl(key) for key in store.scan_iter(f"{prefix}:flight:*")]
        assert all(0 < ttl <= LOCK_TTL * 1000 for ttl in lock_ttls)  # a dead holder's lock lapses within LOCK_TTL

        asked = SlackRequests(SIGNING_SECRET)
        with httpx.Client(timeout=10.0) as client:
            for device in RESTART_DEVICES:  # the same devices, on the survivor
                ack = send(survivor, asked.command(device, response_url=standin.response_url(f"s-{device}")), client)
                assert ack["text"] == f"Looking up {device}…"
            for device in RESTART_DEVICES:
                assert header(wait_for_target(standin, f"s-{device}", timeout=30)).startswith(device)
        own_answered = time.monotonic() - killed_at
        everything = "every lookup of the dead process answered"
        wait_until(lambda: acknowledged <= set(answers_by_request(standin)), 60, everything, [survivor])
        taken_over = time.monotonic() - killed_at
        answers = answers_by_request(standin)
        assert {i for i, n in answers.items() if n > 1} <= left  # only one posted as the kill landed
        for post in standin.posts:
            if post.target.startswith("b"):
                assert header(post).startswith(texts[int(post.target[1:])])
        assert "took over" in survivor.stderr
        assert "Traceback" not in survivor.stderr
        print(
            f"\nkill -9 of one of two processes on Redis with {len(acknowledged)} acknowledged lookups in flight "
            f"({len(lock_ttls)} flight locks held, {max(lock_ttls, default=0)} ms left on them at the kill): the "
            f"survivor answered its own lookups of the same devices {own_answered:.1f} s after the kill and every "
            f"lookup of the dead process {taken_over:.1f} s after it ({len(left)} left in Redis, "
            f"{sum(n - 1 for n in answers.values())} twice)"
        )


SYNC_HOLDER = """
import sys, time
from bot.state.redis.connection import RedisConnection
from bot.state.redis.mirror import RedisMirror

def backfill():
    print("syncing", flush=True)
    time.sleep(600)  # a long backfill, killed part way

RedisMirror(RedisConnection(sys.argv[1])).single_flight("sync", backfill, lambda: None)
"""


def test_fault_kill_9_of_the_process_syncing_the_graph_mirror() -> None:
    """A process killed while it syncs the Graph mirror on Redis (a backfill reading many pages) leaves its sync
    lock; it lapses within `LOCK_TTL`, as no renewal comes, and another process syncs."""
    require_redis()
    prefix = unique_prefix()
    store = redis.Redis.from_url(REDIS_URL)
    holder = subprocess.Popen(
        [sys.executable, "-c", SYNC_HOLDER, url_with_prefix(prefix)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"syncing\n"
        lock = f"{prefix}:flight:mirror:sync"
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=10) == -signal.SIGKILL
        left = store.pttl(lock)
        assert 0 < left <= LOCK_TTL * 1000  # before: up to 180,000 ms, renewed every minute
        survivor = RedisConnection(url_with_prefix(prefix))
        try:
            synced = RedisMirror(survivor).single_flight("sync", lambda: "synced by the survivor", lambda: None)
        finally:
            survivor.close()
        assert synced == ("synced by the survivor", False)
        print(f"\nkill -9 mid-sync of the Graph mirror: {left} ms left on its sync lock at the kill")
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=10)
        store.close()
        delete_prefix(prefix)
