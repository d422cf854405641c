"""Hardening: what a hostile Defender tenant can make the bot post, and what forged requests can make it do.

1. Hostile alert content the built-in simulator lacks (invalid UTF-16 in the raw JSON, 100 kB fields,
   bidi and zero-width characters, pings, disguised links and pre-escaped entities in every field the card
   shows) goes through a full command, and the card that arrives is inert, within Block Kit limits and valid
   Unicode.
2. Forged requests (no signature, a wrong one, a replayed or future timestamp, a body changed after signing,
   another app's secret) are refused with 401 and leave no trace: no Defender call, no Slack call, no job.

What strangers can type or press, as 2,000-example properties, is in tests/system/test_hardening.py.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.defender.simulator import QUIET_HOSTNAME, SimulatedTenant
from bot.demo.slack_requests import SlackRequests
from bot.demo.standin import Posted
from bot.slack import actions, details, listeners
from bot.slack.blockkit import violations
from bot.slack.poster import web_client
from bot.slack.server import HttpServer, wsgi_app
from tests.doubles import secrets as fake_secrets
from tests.doubles.cards import hidden_characters
from tests.doubles.defender import machine_id
from tests.doubles.logs import Crashes
from tests.doubles.slack import SIGNING_SECRET, Harness, all_text, assert_inert, buttons, close_server, harness, header

# The audit trail off stderr, and no per-person or per-channel request limit in the way.
QUIET_ENV = {"BOT_AUDIT_LOG": "off", "BOT_USER_RATE_PER_MINUTE": "0", "BOT_CHANNEL_RATE_PER_MINUTE": "0"}
_SIMULATED = SimulatedTenant()
QUIET_ID = machine_id(_SIMULATED, QUIET_HOSTNAME)  # a device without alerts: each case adds its own
FIN_014_ID = machine_id(_SIMULATED, "ws-fin-014.contoso.local")
del _SIMULATED


# -- 1. hostile alert content ----------------------------------------------------------------------------------


def lit(value: str) -> bytes:
    """A JSON string literal, as json.dumps writes it."""
    return json.dumps(value).encode()


def raw(json_source: str) -> bytes:
    """A JSON string literal written by hand: `\\ud800` stays an escape in the JSON text."""
    return ('"' + json_source + '"').encode()


@dataclass(frozen=True)
class Hostile:
    """Raw JSON text for fields of one alert (and of its machine) on an otherwise empty device."""

    alert: dict[str, bytes] = field(default_factory=dict)
    machine: dict[str, bytes] = field(default_factory=dict)
    shown: str = ""  # visible text the card must carry, proof that the hostile record was rendered
    escaped: str = ""  # an escaped form the card must carry


KB100 = 100_000
HOSTILE_CASES: dict[str, Hostile] = {
    # Invalid UTF-16 in Defender's JSON: escapes json.dumps never writes, which json.loads turns into lone surrogates.
    "title-lone-high-surrogate": Hostile({"title": raw(r"S01 Invoice \ud800 paid")}, shown="S01 Invoice"),
    "title-lone-low-surrogate": Hostile({"title": raw(r"S02 \udfff trailing \udc00")}, shown="S02"),
    "title-reversed-surrogate-pair": Hostile({"title": raw(r"S03 \ude00\ud83d swapped")}, shown="S03"),
    "title-half-emoji-at-the-cut": Hostile({"title": raw("S04 " + "x" * 142 + r"\ud83d\ud83d\ud83d")}, shown="S04"),
    "assignee-with-surrogates": Hostile(
        {"title": lit("S05"), "status": lit("InProgress"), "assignedTo": raw(r"\udc80ops\ud800@contoso.com")},
        shown="assigned to ops@contoso.com",
    ),
    "category-and-source-with-surrogates": Hostile(
        {"title": lit("S06"), "category": raw(r"\ud800Execution"), "detectionSource": raw(r"Windows\udbffAtp")},
        shown="Execution",
    ),
    "verdict-with-surrogates": Hostile(
        {
            "title": lit("S07"),
            "status": lit("Resolved"),
            "classification": raw(r"TruePositive\ud800"),
            "determination": raw(r"\udc00Malware"),
        },
        shown="Malware",
    ),
    "machine-fields-with-surrogates": Hostile(
        {"title": lit("S08")},
        {
            "computerDnsName": raw(r"ws-\ud800reception.contoso.local"),
            "osPlatform": raw(r"Windows\udfff11"),
            "rbacGroupName": raw(r"\ud800"),
            "osVersion": raw(r"\udc00"),
        },
        shown="S08",
    ),
    "alert-id-with-a-surrogate": Hostile({"id": raw(r"da638000000000000000_\ud800"), "title": lit("S09")}, shown="S09"),
    "description-100kB-of-surrogates": Hostile(
        {"title": lit("S10"), "description": raw(r"\ud800A" * (KB100 // 2))}, shown="S10"
    ),
    # 100 kB fields.
    "description-100kB-plain": Hostile({"title": lit("K01"), "description": lit("D" * KB100)}, shown="K01"),
    "description-100kB-escape-heavy": Hostile({"title": lit("K02"), "description": lit("<&>" * (KB100 // 3))}),
    "description-100kB-of-pings": Hostile({"title": lit("K03"), "description": lit("<!channel> " * (KB100 // 11))}),
    "title-100kB-of-pings-and-entities": Hostile(
        {"title": lit(("<!here> &lt; \u202e<https://evil|bank> " * 4000)[:KB100])}, escaped="&lt;!here&gt;"
    ),
    "assignee-100kB": Hostile(
        {"title": lit("K05"), "status": lit("New"), "assignedTo": lit("a" * KB100 + "@contoso.com")}, shown="K05"
    ),
    "machine-name-and-os-100kB": Hostile(
        {"title": lit("K06")},
        {
            "computerDnsName": lit("n" * KB100),
            "osPlatform": lit("<&>" * (KB100 // 3)),
            "rbacGroupName": lit("g" * KB100),
        },
        shown="K06",
    ),
    # Bidi and zero-width characters: removed before escaping, so they can neither disguise text nor split a token.
    "title-bidi-overrides-and-isolates": Hostile(
        {"title": lit("R01 \u202eexe.txt\u202c \u2066\u2067\u2068isolated\u2069 \u200f\u200e\u061c marks")},
        shown="R01 exe.txt isolated marks",
    ),
    "ping-split-by-zero-width": Hostile(
        {"title": lit("R02 <\u200b!channel\u200d> <\u2060!here\ufeff> <@\u200cU024BE7LH>")},
        escaped="R02 &lt;!channel&gt; &lt;!here&gt; &lt;@U024BE7LH&gt;",
    ),
    "link-split-by-zero-width": Hostile(
        {"title": lit("R03 <https://evil\u200b.example|bank\u200d>")}, escaped="R03 &lt;https://evil.example¦bank&gt;"
    ),
    "bidi-in-machine-fields": Hostile(
        {"title": lit("R04")},
        {
            "computerDnsName": lit("ws-\u202ereception\u200b.contoso.local"),
            "osPlatform": lit("\u202eWindows\u2066"),
            "rbacGroupName": lit("Fin\u200bance\u202e"),
        },
        shown="Group Finance",
    ),
    "title-of-only-invisible-characters": Hostile({"title": lit("\u200b\u200c\u200d\u2060\ufeff\u202e" * 30)}),
    # Pings in the fields the simulator's hostile device leaves alone.
    "pings-in-assignee-category-source": Hostile(
        {
            "title": lit("P01"),
            "status": lit("InProgress"),
            "assignedTo": lit("<!channel>"),
            "category": lit("<!here>"),
            "detectionSource": lit("<!everyone>"),
            "threatName": lit("<@U024BE7LH>"),
        },
        escaped="assigned to &lt;!channel&gt;",
    ),
    "pings-in-the-verdict": Hostile(
        {
            "title": lit("P02"),
            "status": lit("Resolved"),
            "classification": lit("<!channel>"),
            "determination": lit("<!subteam^S123|@oncall>"),
        },
        escaped="&lt;!subteam^S123|@oncall&gt;",
    ),
    "pings-in-machine-fields": Hostile(
        {"title": lit("P03")},
        {
            "osPlatform": lit("<!channel>"),
            "osVersion": lit("<!here>"),
            "rbacGroupName": lit("<@U024BE7LH>"),
            "healthStatus": lit("<!everyone>"),
            "riskScore": lit("<!channel>"),
            "exposureLevel": lit("<!here>"),
        },
        escaped="&lt;!channel&gt; &lt;!here&gt;",
    ),
    # Disguised links outside the title.
    "disguised-link-in-assignee": Hostile(
        {"title": lit("L01"), "status": lit("InProgress"), "assignedTo": lit("<https://evil|bank>")},
        escaped="assigned to &lt;https://evil|bank&gt;",
    ),
    "disguised-link-in-the-verdict": Hostile(
        {
            "title": lit("L02"),
            "status": lit("Resolved"),
            "classification": lit("TruePositive"),
            "determination": lit("<https://evil|bank>"),
        },
        escaped="&lt;https://evil|bank&gt;",
    ),
    "disguised-link-as-machine-name-and-group": Hostile(
        {"title": lit("L03")},
        {"computerDnsName": lit("<https://evil|bank>"), "rbacGroupName": lit("<https://evil|bank>")},
        escaped="Group &lt;https://evil|bank&gt;",
    ),
    "disguised-link-with-a-pipe-in-the-title": Hostile(
        {"title": lit("L04 label|<https://evil|bank>|tail>")}, escaped="L04 label¦&lt;https://evil¦bank&gt;¦tail&gt;"
    ),
    # Text Defender (or an attacker) already escaped: shown as typed, never decoded into a token.
    "pre-escaped-ping-in-the-title": Hostile(
        {"title": lit("E01 &lt;!channel&gt; &lt;@U024BE7LH&gt;")}, escaped="E01 &amp;lt;!channel&amp;gt;"
    ),
    "pre-escaped-link-in-assignee": Hostile(
        {"title": lit("E02"), "status": lit("InProgress"), "assignedTo": lit("&lt;https://evil|bank&gt;")},
        escaped="assigned to &amp;lt;https://evil|bank&amp;gt;",
    ),
    "numeric-and-double-escaped-entities": Hostile(
        {"title": lit("E03 &#60;!here&#62; &#x3C;!channel&#x3E; &amp;lt;!everyone&amp;gt; &quot;")},
        escaped="E03 &amp;#60;!here&amp;#62;",
    ),
    "half-escaped-tokens": Hostile(
        {"title": lit("E04 <!channel&gt; &lt;!here> <https://evil|bank&gt;")},
        escaped="E04 &lt;!channel&amp;gt; &amp;lt;!here&gt;",
    ),
    "pre-escaped-pings-in-machine-fields": Hostile(
        {"title": lit("E05")}, {"rbacGroupName": lit("&lt;!channel&gt;")}, escaped="Group &amp;lt;!channel&amp;gt;"
    ),
}


class RawTenant(SimulatedTenant):
    """The simulator, with placeholders in its JSON answers swapped for raw JSON text (what json.dumps
    would never write: lone-surrogate escapes, and so on)."""

    def __init__(self, swaps: dict[bytes, bytes], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.swaps = swaps
        self.swapped: Counter[bytes] = Counter()

    def serve(self, request: httpx.Request) -> httpx.Response:
        answer = super().serve(request)
        body = answer.content
        for placeholder, text in self.swaps.items():
            if placeholder in body:
                self.swapped[placeholder] += body.count(placeholder)
                body = body.replace(placeholder, text)
        headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}
        return httpx.Response(answer.status_code, headers=headers, content=body)


def hostile_tenant(case: Hostile) -> RawTenant:
    swaps: dict[bytes, bytes] = {}

    def placeholder(text: bytes) -> str:
        key = f"@@hostile-{len(swaps)}@@"
        swaps[lit(key)] = text
        return key

    tenant = RawTenant(swaps)
    machine = next(m for m in tenant.machines if m["id"] == QUIET_ID)
    for name, text in case.machine.items():
        machine[name] = placeholder(text)
    tenant.add_alert(QUIET_ID, **{name: placeholder(text) for name, text in case.alert.items()})
    return tenant


def assert_sendable(posted: Posted) -> None:
    """A card Slack takes and shows as is: limits kept, valid Unicode, nothing hidden, nothing that pings."""
    assert violations(posted.message) == []
    json.dumps(posted.payload, ensure_ascii=False).encode("utf-8")  # lone surrogates cannot be encoded
    assert_inert(posted.payload)
    readable = all_text(posted.payload)
    assert hidden_characters(readable) == []


@pytest.mark.parametrize("case", list(HOSTILE_CASES))
def test_hostile_alert_content_through_a_full_command(case: str) -> None:
    hostile = HOSTILE_CASES[case]
    tenant = hostile_tenant(hostile)
    crashes = Crashes()
    logging.getLogger().addHandler(crashes)
    try:
        for rig in harness(env=QUIET_ENV, tenant=tenant):
            response = rig.command(QUIET_ID, "hostile")
            assert response.status == 200
            [posted] = rig.standin.wait_for_posts(1)
            rig.wait_idle()
    finally:
        logging.getLogger().removeHandler(crashes)
    assert crashes.since(0) == []
    assert set(tenant.swapped) == set(tenant.swaps)  # every hostile field was served to the bot
    assert header(posted).endswith(" · 1 alert")  # the device card, not an error card
    assert_sendable(posted)
    text = all_text(posted.payload)
    assert hostile.shown in text
    assert hostile.escaped in text


# The whole answer unreadable: a problem card, not a crash.
UNREADABLE_BODIES = {
    "not-utf-8": b'"\xff\xfe\xc3\x28 not UTF-8"',
    "surrogate-escape-as-a-key": b'"U01", "\\ud800": "key"',
    "nesting-bomb": b'"U03", "evidence": ' + b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("case", list(UNREADABLE_BODIES))
def test_unreadable_defender_answers_get_a_problem_card(case: str) -> None:
    key = "@@unreadable@@"
    tenant = RawTenant({lit(key): UNREADABLE_BODIES[case]})
    tenant.add_alert(QUIET_ID, title=key)
    crashes = Crashes()
    logging.getLogger().addHandler(crashes)
    try:
        for rig in harness(env=QUIET_ENV, tenant=tenant):
            assert rig.command(QUIET_ID, "unreadable").status == 200
            [posted] = rig.standin.wait_for_posts(1)
            rig.wait_idle()
    finally:
        logging.getLogger().removeHandler(crashes)
    assert tenant.swapped  # the broken answer was served
    assert not [c for c in crashes.since(0) if "unhandled error" in c], crashes.since(0)
    assert "Something went wrong on the bot's side" not in posted.payload["text"]
    assert_sendable(posted)


# -- 2. signatures ---------------------------------------------------------------------------------------------

Request = tuple[bytes, dict[str, str]]


@dataclass
class Traces:
    """Everything a request could set in motion, counted: pool jobs, background notes, Slack and Defender."""

    jobs: int = 0
    notes: int = 0

    def snapshot(self, h: Harness) -> tuple[int, int, int, int, int]:
        return self.jobs, self.notes, len(h.tenant.request_log), len(h.standin.calls), len(h.standin.posts)


@dataclass
class SignedRig:
    h: Harness
    traces: Traces
    server: HttpServer
    client: httpx.Client
    button_value: str
    forged: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def post(self, request: Request) -> int:
        body, headers = request
        url = f"http://127.0.0.1:{self.server.port}/slack/events"
        return self.client.post(url, content=body, headers=headers).status_code

    def dispatch(self, request: Request) -> int:
        return self.h.dispatch(request).status


@pytest.fixture(scope="module")
def signed() -> Iterator[SignedRig]:
    runs = harness(env=QUIET_ENV)
    h = next(runs)
    traces = Traces()
    submit = h.bot.pool.submit
    in_background = listeners.in_background

    def counting_submit(job: Callable[[], None], on_abandon: Callable[[], object] | None = None) -> bool:
        traces.jobs += 1
        return submit(job, on_abandon)

    def counting_background(work: Callable[[], object]) -> None:
        traces.notes += 1
        in_background(work)

    h.command("ws-fin-014", "first-card")  # a real card, for a button value the bot wrote
    [card] = h.standin.wait_for_posts(1)
    value = buttons(card)[actions.REFRESH]["value"]
    h.wait_idle()
    server = HttpServer(wsgi_app(h.bot.health, SlackRequestHandler(h.bot.app)), "127.0.0.1", 0).start()
    client = httpx.Client(timeout=10.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(h.bot.pool, "submit", counting_submit)
        for module in (listeners, details):  # every notice sent off the request thread
            patch.setattr(module, "in_background", counting_background)
        try:
            yield SignedRig(h, traces, server, client, value)
        finally:
            client.close()
            close_server(server)
            runs.close()


def genuine(rig: SignedRig, kind: str, requests: SlackRequests, event_id: str) -> Request:
    """The request of `kind` as Slack would sign it with `requests`' secret and clock."""
    url = rig.h.standin.response_url(f"sig-{event_id}")
    if kind == "command":
        return requests.command("ws-fin-014", response_url=url)
    if kind == "event":
        mention = requests.mention("ws-fin-014", ts=f"1700000001.{next(rig.forged):06d}")
        return requests.event(mention, event_id=event_id)
    return requests.block_action(actions.REFRESH, rig.button_value, response_url=url)


def _tamper(body: bytes) -> bytes:
    changed = body.replace(b"ws-fin-014", b"ws-fin-015", 1)
    if changed == body:  # the button: change one hex digit of the machine id it carries
        changed = body.replace(FIN_014_ID[:8].encode(), FIN_014_ID[:7].encode() + b"0", 1)
    assert changed != body
    return changed


FORGERIES = (
    "missing-signature",
    "wrong-signature",
    "replayed-after-5-minutes",
    "timestamp-from-the-future",
    "body-tampered-after-signing",
    "signed-with-another-apps-secret",
)


def forge(rig: SignedRig, kind: str, forgery: str, event_id: str) -> Request:
    if forgery == "replayed-after-5-minutes":  # signed correctly, 5 min 6 s ago
        return genuine(rig, kind, SlackRequests(SIGNING_SECRET, clock=lambda: time.time() - 306), event_id)
    if forgery == "timestamp-from-the-future":
        return genuine(rig, kind, SlackRequests(SIGNING_SECRET, clock=lambda: time.time() + 600), event_id)
    if forgery == "signed-with-another-apps-secret":
        return genuine(rig, kind, SlackRequests(fake_secrets.FOREIGN_SIGNING_SECRET), event_id)
    body, headers = genuine(rig, kind, rig.h.requests, event_id)
    if forgery == "missing-signature":
        return body, {k: v for k, v in headers.items() if k != "X-Slack-Signature"}
    if forgery == "wrong-signature":
        return body, {**headers, "X-Slack-Signature": "v0=" + headers["X-Slack-Signature"][3:][::-1]}
    assert forgery == "body-tampered-after-signing"
    return _tamper(body), headers


KINDS = ("command", "event", "button")
TRANSPORTS = ("http", "dispatch")
# Already covered for the HTTP server by tests/test_slack_server.py (without the job and Slack-call checks).
COVERED = {
    ("http", "command", "replayed-after-5-minutes"),
    ("http", "command", "body-tampered-after-signing"),
    ("http", "command", "signed-with-another-apps-secret"),
    ("http", "event", "wrong-signature"),
}
SIGNATURE_CASES = [
    pytest.param(transport, kind, forgery, id=f"{transport}-{kind}-{forgery}")
    for transport in TRANSPORTS
    for kind in KINDS
    for forgery in FORGERIES
    if (transport, kind, forgery) not in COVERED
]


def quiet(rig: SignedRig) -> None:
    """Long enough for anything a request set off (a job, a background note, a post) to show."""
    time.sleep(0.15)
    rig.h.wait_idle()


@pytest.mark.parametrize(("transport", "kind", "forgery"), SIGNATURE_CASES)
def test_forged_requests_are_refused_without_a_trace(
    signed: SignedRig, transport: str, kind: str, forgery: str
) -> None:
    send = signed.post if transport == "http" else signed.dispatch
    event_id = f"EvFORGED{transport}{kind}{forgery}".replace("-", "")
    request = forge(signed, kind, forgery, event_id)
    before = signed.traces.snapshot(signed.h)
    assert send(request) == 401
    quiet(signed)
    assert signed.traces.snapshot(signed.h) == before  # no job, no note, no Defender request, no Slack call
    if kind == "event":  # and the forged delivery did not use up the event id: the genuine one is answered
        assert send(genuine(signed, kind, signed.h.requests, event_id)) == 200
        quiet(signed)
        assert signed.traces.snapshot(signed.h)[4] > before[4]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("kind", KINDS)
def test_the_genuine_request_of_each_forgery_is_served(signed: SignedRig, transport: str, kind: str) -> None:
    """The control: signed as Slack signs, the same request is accepted and answered."""
    send = signed.post if transport == "http" else signed.dispatch
    before = signed.traces.snapshot(signed.h)
    assert send(genuine(signed, kind, signed.h.requests, f"EvGENUINE{transport}{kind}")) == 200
    quiet(signed)
    after = signed.traces.snapshot(signed.h)
    assert after[0] > before[0]  # a job ran
    assert after[4] > before[4]  # and answered


# -- the hygiene check itself ----------------------------------------------------------------------------------


@pytest.mark.secrets_visible
def test_the_hygiene_check_sees_a_logged_and_a_posted_secret(secret_hygiene: Any) -> None:
    """Proof that the suite-wide check can fail: a secret in a logged exception and one in a Slack payload
    are both recorded (this test is marked, so they are counted instead of failing it)."""
    start = secret_hygiene.mark()
    try:
        raise RuntimeError(f"token was {fake_secrets.BOT_TOKEN}")
    except RuntimeError:
        logging.getLogger("tests.hardening").debug("planted", exc_info=True)
    for rig in harness(env=QUIET_ENV):
        web_client(rig.standin.bot_token, rig.standin.api_url).chat_postMessage(
            channel="C0PLANTED", text=f"planted {fake_secrets.MARKER}"
        )
    leaks = secret_hygiene.leaks_since(start)
    assert any(leak.where == "log" and fake_secrets.BOT_TOKEN in leak.secrets for leak in leaks), leaks
    assert any(leak.where == "slack" and leak.source == "chat.postMessage" for leak in leaks), leaks
