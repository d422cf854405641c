"""Hardening: what strangers can send the bot, and what a hostile Defender tenant can make it post.

1. Properties (hypothesis, the `hardening` profile of conftest: at least 2,000 examples each) drive the real
   Bolt app with signed requests through one `Harness`: slash-command text, mention text and button values.
   For every example: the request is acknowledged with 200 inside Slack's 3 s, nothing crashes (no ERROR
   record, in particular no "unhandled error"), the person gets a reply, nothing the bot posts can ping or
   carry a foreign link, and Defender is asked only for the four APIs the bot uses, with device references
   that `bot.defender.refs` accepts.
2. Hostile alert content the built-in simulator lacks (invalid UTF-16 in the raw JSON, 100 kB fields,
   bidi and zero-width characters, pings, disguised links and pre-escaped entities in every field the card
   shows) goes through a full command, and the card that arrives is inert, within Block Kit limits and valid
   Unicode.
3. Forged requests (no signature, a wrong one, a replayed or future timestamp, a body changed after signing,
   another app's secret) are refused with 401 and leave no trace: no Defender call, no Slack call, no job.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import re
import string
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_bolt import BoltResponse
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.defender import refs
from bot.defender.refs import MAX_HOSTNAME_LENGTH, parse_device_ref
from bot.defender.simulator import (
    BUSY_HOSTNAME,
    DUPLICATE_HOSTNAME,
    HOSTILE_HOSTNAME,
    QUIET_HOSTNAME,
    SimulatedTenant,
)
from bot.demo.standin import Posted, SlackRequests
from bot.slack import actions, listeners
from bot.slack.blockkit import Message, violations
from bot.slack.poster import web_client
from bot.slack.server import HttpServer, wsgi_app
from tests import fake_secrets, slack_support
from tests.slack_support import (
    COMMAND_ACK_BUDGET,
    PINGS,
    SIGNING_SECRET,
    Harness,
    all_text,
    close_server,
    foreign_tokens,
    harness,
    header,
)

HARDENING = settings.get_profile("hardening")
MIN_EXAMPLES = 2000
EXAMPLES: Counter[str] = Counter()  # examples run per property, asserted at the end of each property test
REPLY_TIMEOUT = 10.0
# The notes an acknowledgement carries when the answer follows at the response_url.
FOLLOW_UP_NOTES = ("Looking up ", "Setting up a watch on ", "Stopping the watch")
INVALID_BUTTON = listeners.INVALID_BUTTON
# Every request gets its own user and channel, so the per-person and per-channel request limits never turn
# the fuzzed input away before the parser sees it; the audit trail stays off stderr.
QUIET_ENV = {"BOT_AUDIT_LOG": "off", "BOT_USER_RATE_PER_MINUTE": "0", "BOT_CHANNEL_RATE_PER_MINUTE": "0"}


# -- what Defender may be asked --------------------------------------------------------------------------------
# A device reference in a path is what `refs.parse_device_ref` lets through, as the client sends it (lowercased,
# no trailing dot): a 40-hex machine id or a hostname of letters, digits, '-', '_' and single dots.

assert refs._HOSTNAME.pattern.endswith(r"\.?")
_HOST = refs._HOSTNAME.pattern.removesuffix(r"\.?")  # the client strips the trailing dot
_DEVICE = rf"(?:{refs._MACHINE_ID.pattern}|{_HOST})"
_STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,7})?Z"
_PAGE = r"(?:&?\$skiptoken=\d{1,9})?"
ALLOWED_DEFENDER_REQUESTS = re.compile(
    "|".join(
        [
            rf"/api/machines/(?P<device>{_DEVICE})",
            rf"/api/machines/(?P<alerts_of>{_DEVICE})/alerts(?:\?\$skiptoken=\d{{1,9}})?",
            rf"/api/machines\?\$filter=(?:computerDnsName eq '(?P<name>{_HOST})'"
            rf"|startswith\(computerDnsName,'(?P<prefix>{_HOST})'\)){_PAGE}",
            rf"/api/alerts\?\$filter=lastUpdateTime ge {_STAMP}&\$top=\d{{1,5}}{_PAGE}",
        ]
    )
)


def assert_defender_requests_allowed(served: list[tuple[str, str]]) -> None:
    for method, path in served:
        assert method == "GET", (method, path)
        match = ALLOWED_DEFENDER_REQUESTS.fullmatch(path)
        assert match, f"Defender was asked for {path!r}"
        for name in ("device", "alerts_of", "name", "prefix"):
            value = match[name]
            if value is not None:  # the same rules as the parser, applied once more to what was sent
                assert len(value) <= MAX_HOSTNAME_LENGTH, path
                assert parse_device_ref(value).value == value, path


# -- what the bot posts ----------------------------------------------------------------------------------------


def mrkdwn_view(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload without its plain_text objects: Slack shows those literally and never parses them, so a
    `<!channel>` in a header is text, not a ping. Everything else (mrkdwn, fallback text) is parsed."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("type") == "plain_text":
                return {}
            return {key: strip(value) for key, value in node.items()}
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    return {"text": payload.get("text", ""), "blocks": strip(payload.get("blocks") or [])}


def hidden_characters(text: str) -> list[str]:
    """Control, format, surrogate, private-use and unassigned characters (newlines are layout, not hidden)."""
    return [repr(ch) for ch in text if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn")]


def assert_inert(payload: dict[str, Any], *, allowed_mentions: tuple[str, ...] = ()) -> None:
    """Nothing in a message the bot sends can notify anyone (but `allowed_mentions`) or disguise a link."""
    view = mrkdwn_view(payload)
    tokens = [t for t in foreign_tokens(view) if t not in allowed_mentions]
    assert tokens == [], tokens
    raw = json.dumps(view, ensure_ascii=False)
    for mention in allowed_mentions:
        raw = raw.replace(mention, "")
    assert not [ping for ping in PINGS if ping in raw], raw[:500]


# -- a harness for many examples -------------------------------------------------------------------------------


class Crashes(logging.Handler):
    """ERROR records from any logger, kept while the harness lives: a crash anywhere shows up here."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def since(self, start: int) -> list[str]:
        found = []
        for record in self.records[start:]:
            text = f"{record.name}: {record.getMessage()}"
            if record.exc_info and record.exc_info[1] is not None:
                text += f" [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
            found.append(text)
        return found


@dataclass
class Rig:
    """One harness shared by every example of a property, with the counters read before and after each."""

    h: Harness
    crashes: Crashes
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def mark(self) -> tuple[int, int, int]:
        return len(self.h.tenant.request_log), len(self.h.standin.posts), len(self.crashes.records)

    def settle(self, mark: tuple[int, int, int]) -> list[tuple[str, str]]:
        """Wait for the pool, then check what every example must satisfy; return the Defender requests."""
        for _ in range(200):  # a finer poll than wait_idle's 10 ms for the usual case of a job about to end
            if not self.h.bot.pool.in_use:
                break
            time.sleep(0.0005)
        self.h.wait_idle(timeout=REPLY_TIMEOUT)
        served = self.h.tenant.request_log[mark[0] :]
        assert_defender_requests_allowed(served)
        crashes = self.crashes.since(mark[2])
        assert not [c for c in crashes if "unhandled error" in c], crashes
        assert crashes == []
        return served

    def wait_for_reply(self, start: int, wanted: Callable[[Posted], bool]) -> Posted:
        """The first post since `start` that `wanted` accepts; fails after REPLY_TIMEOUT without one."""
        deadline = time.monotonic() + REPLY_TIMEOUT
        while True:
            posts = self.h.standin.posts
            for posted in posts[start:]:
                if wanted(posted):
                    return posted
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no reply among {[(p.via, p.target) for p in posts[start:]]}")
            with contextlib.suppress(TimeoutError):
                self.h.standin.wait_for_posts(len(posts) + 1, timeout=remaining)


def count_cards(kind: str, posts: list[Posted]) -> None:
    """Count the examples answered with a device card: proof that the input got past the parser to Defender."""
    if any(actions.REFRESH in slack_support.buttons(p) for p in posts if p.payload.get("blocks")):
        EXAMPLES[f"{kind} answered with a device card"] += 1


def timed(dispatch: Callable[[], BoltResponse]) -> BoltResponse:
    began = time.perf_counter()
    response = dispatch()
    elapsed = time.perf_counter() - began
    assert response.status == 200, (response.status, response.body)
    assert elapsed < COMMAND_ACK_BUDGET, f"acknowledged after {elapsed:.2f} s"
    return response


_LOAD_SETTINGS = slack_support.load_settings


def _roomy_settings(env: dict[str, str], **kwargs: Any) -> Any:
    """The Defender settings of `make_bot`, with rate budgets large enough that every example reaches Defender
    (budget refusals are tested elsewhere); the simulator's own limit is raised to match."""
    roomy = {**env, "DEFENDER_CALLS_PER_MINUTE": "100000", "DEFENDER_CALLS_PER_HOUR": "1000000"}
    return _LOAD_SETTINGS(roomy, **kwargs)


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    runs = harness(env=QUIET_ENV, tenant=SimulatedTenant(calls_per_minute=1_000_000))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(slack_support, "load_settings", _roomy_settings)
        h = next(runs)
    crashes = Crashes()
    root = logging.getLogger()
    root.addHandler(crashes)
    try:
        yield Rig(h, crashes)
    finally:
        root.removeHandler(crashes)
        runs.close()


# -- strategies ------------------------------------------------------------------------------------------------

# Devices the simulator knows, by name, short name and id, so that part of the input reaches Defender.
_SIMULATED = SimulatedTenant()
KNOWN_IDS = sorted({str(m["id"]) for m in _SIMULATED.machines})
KNOWN_NAMES = sorted({str(m["computerDnsName"]) for m in _SIMULATED.machines})
QUIET_ID = next(str(m["id"]) for m in _SIMULATED.machines if m["computerDnsName"] == QUIET_HOSTNAME)
FIN_014_ID = next(str(m["id"]) for m in _SIMULATED.machines if m["computerDnsName"] == "ws-fin-014.contoso.local")
del _SIMULATED

_hex40 = st.text("0123456789abcdefABCDEF", min_size=40, max_size=40)
_machine_ids = st.one_of(st.sampled_from(KNOWN_IDS), _hex40, _hex40.map(str.upper))
_hostnames = st.one_of(
    st.sampled_from(KNOWN_NAMES),
    st.sampled_from(KNOWN_NAMES).map(lambda name: name.split(".")[0]),
    st.sampled_from([BUSY_HOSTNAME, DUPLICATE_HOSTNAME, HOSTILE_HOSTNAME, QUIET_HOSTNAME, "ws-fin", "srv", "lt-"]),
    st.from_regex(refs._HOSTNAME, fullmatch=True).filter(lambda h: len(h) <= 300),
)
_near_misses = st.one_of(
    st.text("0123456789abcdef", min_size=39, max_size=39),
    st.text("0123456789abcdef", min_size=41, max_size=41),
    st.uuids().map(str),
    st.uuids().map(lambda u: "{" + str(u).upper() + "}"),
    _hex40.map(lambda h: h[:20] + "g" + h[21:]),
    st.sampled_from(["a" * 256, "a." * 128, ".leading", "trailing..", "-dash", "_under", "a..b", "ws fin"]),
)
_nasty_bits = st.sampled_from(
    [
        "../", "..", "%2F", "%2f", "%2e%2e", "%252F", "/", "\\", "?", "#", "&", "=", "'", '"', "`", "%", "%00",
        "<!channel>", "<!here>", "<!everyone>", "<@U024BE7LH>", "<https://x|y>", "<https://evil.example|bank>",
        "<#C1|general>", "&lt;", "&gt;", "&amp;", "\u202e", "\u200b", "\ufeff", "\x00", "\x1b[31m", "\r\n", "\t",
        "$filter=", "$top=1", " or 1 eq 1", "') or true or ('", "*", "~", "_", ":", ",", ";", "|", "@", "界", "🙂",
    ]
)  # fmt: skip
_durations = st.one_of(
    st.sampled_from(["30m", "8h", "24h", "7d", "2w", "180d", "181d", "0m", "0d", "8w", "9999w", "1y", "", "-1h"]),
    st.tuples(st.integers(0, 99999), st.sampled_from("mhdwsy")).map(lambda p: f"{p[0]}{p[1]}"),
)
_words = st.sampled_from(
    ["high", "medium", "low", "informational", "info", "unspecified", "new", "inprogress", "in-progress",
     "in_progress", "resolved", "HIGH", "Dismissed", "critical", ""]
)  # fmt: skip
_lists = st.lists(st.one_of(_words, _nasty_bits), min_size=1, max_size=4).map(",".join)
_filters = st.one_of(
    _lists.map(lambda v: f"severity:{v}"),
    _lists.map(lambda v: f"status:{v}"),
    _durations.map(lambda v: f"since:{v}"),
    _durations.map(lambda v: f"for:{v}"),
    st.sampled_from(["severity:", "status:", "since:", "for:", "colour:red", ":", "::", "severity:high:low"]),
)
_grammar_token = st.one_of(
    _machine_ids,
    _hostnames,
    _near_misses,
    _filters,
    st.sampled_from(["watch", "unwatch", "watches", "alerts", "help", "usage", "?", "WATCH", "Alerts"]),
    _nasty_bits,
    st.tuples(_hostnames, _nasty_bits).map("".join),
    st.tuples(_nasty_bits, _hostnames).map("".join),
    st.text(max_size=12),
)
_separators = st.sampled_from([" ", " ", " ", "  ", "\t", "\n", "\u00a0", "\u3000", ""])
grammar_texts = st.lists(st.tuples(_grammar_token, _separators), max_size=9).map(
    lambda parts: "".join(token + sep for token, sep in parts)
)
# Arbitrary unicode, control characters included (form bodies cannot carry lone surrogates).
any_text = st.text(max_size=300)
long_texts = st.one_of(
    st.text(min_size=400, max_size=5000),
    st.tuples(st.one_of(_grammar_token, _nasty_bits), st.integers(50, 2500)).map(lambda p: (p[0] * p[1])[:5000]),
    st.tuples(_machine_ids, st.integers(0, 5000)).map(lambda p: p[0] + " " * p[1] + "severity:high"),
)
# Well-formed requests, so that a good share of the examples reaches Defender and the watch store.
_valid_filters = st.lists(
    st.one_of(
        st.sets(st.sampled_from(["high", "medium", "low", "info", "unspecified"]), min_size=1).map(
            lambda s: "severity:" + ",".join(sorted(s))
        ),
        st.sets(st.sampled_from(["new", "inprogress", "resolved"]), min_size=1).map(
            lambda s: "status:" + ",".join(sorted(s))
        ),
        st.sampled_from(["since:30m", "since:24h", "since:7d", "since:180d", "SINCE:2W"]),
    ),
    max_size=3,
    unique_by=lambda f: f.split(":")[0].lower(),
)
well_formed = st.tuples(
    st.sampled_from(["", "", "alerts ", "watch ", "unwatch ", "watch for:2h ", "Alerts "]),
    st.one_of(st.sampled_from(KNOWN_IDS), st.sampled_from(KNOWN_NAMES), _hostnames),
    _valid_filters,
).map(lambda p: " ".join([p[0] + p[1], *p[2]]))
command_texts = st.one_of(well_formed, grammar_texts, grammar_texts, any_text, long_texts)

# JSON carries what form bodies cannot: lone surrogates.
_surrogates = st.characters(categories=["Cs"])
# (Pieces, not an alphabet: inside `st.text` the surrogate block would be drawn about once in a thousand texts.)
json_text = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.one_of(st.text(max_size=12), _surrogates, st.lists(_surrogates, max_size=4).map("".join)), max_size=25
    ).map("".join),
)
_slack_markup = st.one_of(
    st.from_regex(r"<@[UW][A-Z0-9]{2,11}(\|[a-z.]{0,10})?>", fullmatch=True),
    st.sampled_from(
        [
            "<@U0DEVALERTS>",
            "<@U0DEVALERTS|device-alerts>",
            "<#C024BE7LH|general>",
            "<!here>",
            "<!channel>",
            "<!subteam^S1|@oncall>",
            "<http://a|b>",
            "<mailto:a@b.c|a@b.c>",
            "<https://evil.example|ws-fin-014>",
            "<http://ws-fin-014.contoso.local|ws-fin-014.contoso.local>",
            "<http://ws-fin-014|>",
            "<http://>",
            "<>",
            "<",
            ">",
            "&amp;",
            "&lt;",
            "&gt;",
            "&lt;!channel&gt;",
            "&#60;",
            "&#x3C;",
            "&quot;",
            "&amp;lt;",
            "&",
        ]
    ),
    _hostnames.map(lambda h: f"<http://{h}|{h}>"),
    _hostnames.map(lambda h: f"<https://{h}>"),
)
mention_texts = st.one_of(
    well_formed,
    well_formed,
    grammar_texts,
    st.lists(st.one_of(_slack_markup, _grammar_token, _separators), max_size=10).map("".join),
    json_text,
    st.tuples(json_text, _slack_markup, grammar_texts).map(" ".join),
    long_texts,
)

BUTTONS = (actions.REFRESH, actions.OPEN_DEVICE, actions.WATCH, actions.UNWATCH)
_b64 = string.ascii_letters + string.digits + "-_"
_as_written = st.tuples(st.sampled_from(KNOWN_IDS), _valid_filters).map(lambda p: " ".join([p[0], *p[1]]))
_inner_values = st.one_of(
    _as_written,  # what the bot's own cards carry
    st.tuples(_machine_ids, st.lists(_filters, max_size=3)).map(lambda p: " ".join([p[0], *p[1]])),
    grammar_texts,
    st.text(max_size=200),
    st.sampled_from(["", " ", FIN_014_ID.upper(), f"{QUIET_ID} severity:high", "ws-fin-014", "../api/alerts"]),
    st.text(min_size=1900, max_size=2100),
)


@dataclass(frozen=True, slots=True)
class ButtonValue:
    """A button value and how it was made: `inner` is set when the bot's own seal wrapped it."""

    value: str
    inner: str | None = None


def button_values(seal: Callable[[str], str]) -> st.SearchStrategy[ButtonValue]:
    sealed = _inner_values.map(lambda inner: ButtonValue(seal(inner), inner))

    def tampered(pair: tuple[ButtonValue, int, str]) -> ButtonValue:
        original, position, replacement = pair
        index = position % max(1, len(original.value))
        return ButtonValue(original.value[:index] + replacement + original.value[index + 1 :])

    return st.one_of(
        _as_written.map(lambda inner: ButtonValue(seal(inner), inner)),
        sealed,
        sealed,
        st.tuples(sealed, st.integers(0, 10_000), st.sampled_from([*_b64, ".", " ", "é", "\ud800"])).map(tampered),
        st.tuples(sealed, _inner_values).map(lambda p: ButtonValue(p[0].value.split(".", 1)[0] + "." + p[1])),
        st.tuples(st.text(_b64, min_size=22, max_size=22), json_text).map(lambda p: ButtonValue(f"{p[0]}.{p[1]}")),
        st.tuples(st.text(_b64, min_size=20, max_size=24), _inner_values).map(lambda p: ButtonValue(".".join(p))),
        _inner_values.map(ButtonValue),  # what the bot wrote before buttons were sealed
        json_text.map(ButtonValue),
        st.text(min_size=1990, max_size=2500).map(ButtonValue),
    )


# -- 1. properties ---------------------------------------------------------------------------------------------


def check_command(rig: Rig, text: str) -> None:
    n = next(rig.ids)
    name, user, channel = f"cmd{n}", f"U0FUZZ{n:06d}", f"C0FUZZ{n:06d}"
    mark = rig.mark()
    request = rig.h.requests.command(
        text, response_url=rig.h.standin.response_url(name), user_id=user, channel_id=channel
    )
    ack = json.loads(timed(lambda: rig.h.dispatch(request)).body)
    assert str(ack.get("text", "")).strip(), ack  # every command is answered in its acknowledgement at least
    assert violations(Message(ack["text"], ack.get("blocks") or [])) == []
    assert_inert(ack)
    if ack["text"].startswith(FOLLOW_UP_NOTES):  # "Looking up …": the answer follows at the response_url
        rig.wait_for_reply(mark[1], lambda p: p.target == name)
    rig.settle(mark)
    for posted in rig.h.standin.posts[mark[1] :]:
        assert_inert(posted.payload, allowed_mentions=(f"<@{user}>",))
    count_cards("command", rig.h.standin.posts[mark[1] :])
    EXAMPLES["command"] += 1


def check_mention(rig: Rig, text: str, raw: bool, in_thread: bool) -> None:
    n = next(rig.ids)
    channel, user, ts = f"C0FUZZ{n:06d}", f"U0FUZZ{n:06d}", f"1700000000.{n:06d}"
    event = rig.h.requests.mention(text, channel=channel, ts=ts, user=user)
    if raw:
        event["text"] = text  # what Slack sends is not always `<@bot> text`
    if in_thread:
        event["thread_ts"] = f"1600000000.{n:06d}"
    thread = event.get("thread_ts", ts)
    mark = rig.mark()
    request = rig.h.requests.event(event)
    response = timed(lambda: rig.h.dispatch(request))
    assert not response.body, response.body
    # Every mention is answered in its thread (an explanation, help, a card, a watch note, or "busy").
    rig.wait_for_reply(mark[1], lambda p: p.target == channel and p.payload.get("thread_ts") == thread)
    rig.settle(mark)
    for posted in rig.h.standin.posts[mark[1] :]:
        assert_inert(posted.payload, allowed_mentions=(f"<@{user}>",))
    count_cards("mention", rig.h.standin.posts[mark[1] :])
    EXAMPLES["mention"] += 1


def check_button(rig: Rig, action_id: str, button: ButtonValue, message_ts: str | None) -> None:
    n = next(rig.ids)
    name, user, channel = f"btn{n}", f"U0FUZZ{n:06d}", f"C0FUZZ{n:06d}"
    mark = rig.mark()
    url = rig.h.standin.response_url(name)
    request = rig.h.requests.block_action(
        action_id, button.value, response_url=url, channel=channel, user_id=user, message_ts=message_ts
    )
    response = timed(lambda: rig.h.dispatch(request))
    assert not response.body, response.body
    if action_id == actions.OPEN_DEVICE:  # a link button: Slack opens the URL, the bot only acknowledges
        assert rig.settle(mark) == []
        assert rig.h.standin.posts[mark[1] :] == []
    else:
        reply = rig.wait_for_reply(mark[1], lambda p: p.target == name)
        served = rig.settle(mark)
        if button.inner is None:  # not written by the bot: refused at once, and Defender never asked
            assert (reply.payload.get("text"), reply.payload.get("response_type")) == (INVALID_BUTTON, "ephemeral")
            assert served == []
    for posted in rig.h.standin.posts[mark[1] :]:
        assert_inert(posted.payload, allowed_mentions=(f"<@{user}>",))
    count_cards("button", rig.h.standin.posts[mark[1] :])
    EXAMPLES[f"button {action_id}"] += 1


def test_any_slash_command_text_is_acknowledged_answered_and_safe(rig: Rig) -> None:
    start, cards = EXAMPLES["command"], EXAMPLES["command answered with a device card"]

    @HARDENING
    @given(text=command_texts)
    def prop(text: str) -> None:
        check_command(rig, text)

    prop()
    assert EXAMPLES["command"] - start >= MIN_EXAMPLES
    assert EXAMPLES["command answered with a device card"] - cards >= 50  # the input did reach Defender, often


def test_any_mention_text_is_acknowledged_answered_and_safe(rig: Rig) -> None:
    start, cards = EXAMPLES["mention"], EXAMPLES["mention answered with a device card"]

    @HARDENING
    @given(text=mention_texts, raw=st.booleans(), in_thread=st.booleans())
    def prop(text: str, raw: bool, in_thread: bool) -> None:
        check_mention(rig, text, raw, in_thread)

    prop()
    assert EXAMPLES["mention"] - start >= MIN_EXAMPLES
    assert EXAMPLES["mention answered with a device card"] - cards >= 40


def test_any_button_value_is_acknowledged_and_only_the_bots_own_reach_defender(rig: Rig) -> None:
    seal = rig.h.bot.seal  # the contract: keyed from the signing secret, `seal(inner)` / `open(sealed)`
    start, cards = sum(EXAMPLES[f"button {a}"] for a in BUTTONS), EXAMPLES["button answered with a device card"]
    before = {a: EXAMPLES[f"button {a}"] for a in BUTTONS}

    @HARDENING
    @given(
        action_id=st.sampled_from(BUTTONS),
        button=button_values(seal.seal),
        message_ts=st.one_of(st.none(), st.just("1700000000.000001"), st.text(max_size=20)),
    )
    def prop(action_id: str, button: ButtonValue, message_ts: str | None) -> None:
        if button.inner is None:  # a tampered value that happens to be intact again is the bot's own
            try:
                button = ButtonValue(button.value, seal.open(button.value))
            except actions.InvalidButton:
                pass
            except UnicodeError:  # a lone surrogate can never be the bot's own; the bot must still refuse it
                pass
        check_button(rig, action_id, button, message_ts or None)

    prop()
    assert sum(EXAMPLES[f"button {a}"] for a in BUTTONS) - start >= MIN_EXAMPLES
    for action_id in BUTTONS:  # every button had its share of the examples
        assert EXAMPLES[f"button {action_id}"] - before[action_id] >= MIN_EXAMPLES // 8, action_id
    assert EXAMPLES["button answered with a device card"] - cards >= 25  # sealed lookups did reach Defender


@pytest.mark.parametrize("text", ["payload", "payload-srv-01.contoso.local", "ws-fin-014 payload"])
def test_a_command_whose_text_says_payload_is_answered(rig: Rig, text: str) -> None:
    """slack_bolt 1.30 parses any form body containing "payload" as empty; `middleware.repair_form_body` reads it."""
    check_command(rig, text)


@pytest.mark.parametrize("value", ["0000000000000000000000.\ud800", "\udfff" * 22 + ".x", "A" * 22 + ".ws\udc00"])
def test_a_button_value_with_a_lone_surrogate_is_refused(rig: Rig, value: str) -> None:
    check_button(rig, actions.REFRESH, ButtonValue(value), None)


# -- 2. hostile alert content ----------------------------------------------------------------------------------


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


# -- 3. signatures ---------------------------------------------------------------------------------------------

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
    in_background = listeners._in_background

    def counting_submit(job: Callable[[], None]) -> bool:
        traces.jobs += 1
        return submit(job)

    def counting_background(work: Callable[[], object]) -> None:
        traces.notes += 1
        in_background(work)

    h.command("ws-fin-014", "first-card")  # a real card, for a button value the bot wrote
    [card] = h.standin.wait_for_posts(1)
    value = slack_support.buttons(card)[actions.REFRESH]["value"]
    h.wait_idle()
    server = HttpServer(wsgi_app(h.bot.health, SlackRequestHandler(h.bot.app)), "127.0.0.1", 0).start()
    client = httpx.Client(timeout=10.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(h.bot.pool, "submit", counting_submit)
        patch.setattr(listeners, "_in_background", counting_background)
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
