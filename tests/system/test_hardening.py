"""Hardening properties: what strangers can send the bot, at 2,000 examples each (the `hardening` profile).

Each property drives the real Bolt app with signed requests through one `Harness`: slash-command text, mention text
and button values. For every example: the request is acknowledged with 200 inside Slack's 3 s, nothing crashes
(no ERROR record, in particular no "unhandled error"), the person gets a reply, nothing the bot posts can ping or
carry a foreign link, and Defender is asked only for the four APIs the bot uses, with device references that
`bot.defender.refs` accepts. The hostile content and forged requests of the same kind are in
tests/integration/test_hardening.py.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import re
import string
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_bolt import BoltResponse

from bot.defender import refs
from bot.defender.refs import MAX_HOSTNAME_LENGTH, parse_device_ref
from bot.defender.simulator import BUSY_HOSTNAME, DUPLICATE_HOSTNAME, HOSTILE_HOSTNAME, QUIET_HOSTNAME, SimulatedTenant
from bot.demo.standin import Posted
from bot.slack import actions, listeners
from bot.slack.blockkit import Message, violations
from tests.doubles.defender import machine_id
from tests.doubles.logs import Crashes
from tests.doubles.slack import COMMAND_ACK_BUDGET, Harness, assert_inert, buttons, harness

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
_PAGE = r"(?:&?\$skip=\d{1,9})?"  # Defender's nextLink: pages of 10,000 with $skip
ALLOWED_DEFENDER_REQUESTS = re.compile(
    "|".join(
        [
            rf"/api/machines/(?P<device>{refs._MACHINE_ID.pattern})",
            rf"/api/machines/(?P<alerts_of>{_DEVICE})/alerts(?:\?\$skip=\d{{1,9}})?",
            rf"/api/machines\?\$filter=(?:computerDnsName eq '(?P<name>{_HOST})'{_PAGE}"
            rf"|startswith\(computerDnsName,'(?P<prefix>{_HOST})'\)&\$top=\d{{1,5}})",
            rf"/api/alerts\?\$filter=lastUpdateTime ge {_STAMP}&\$top=\d{{1,5}}",
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
    if any(actions.REFRESH in buttons(p) for p in posts if p.payload.get("blocks")):
        EXAMPLES[f"{kind} answered with a device card"] += 1


def timed(dispatch: Callable[[], BoltResponse]) -> BoltResponse:
    began = time.perf_counter()
    response = dispatch()
    elapsed = time.perf_counter() - began
    assert response.status == 200, (response.status, response.body)
    assert elapsed < COMMAND_ACK_BUDGET, f"acknowledged after {elapsed:.2f} s"
    return response


# Rate budgets large enough that every example reaches Defender (budget refusals are tested elsewhere); the
# simulator's own limit is raised to match.
ROOMY_BUDGET = {"DEFENDER_CALLS_PER_MINUTE": "100000", "DEFENDER_CALLS_PER_HOUR": "1000000"}


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    runs = harness(env=QUIET_ENV, tenant=SimulatedTenant(calls_per_minute=1_000_000), settings_env=ROOMY_BUDGET)
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
QUIET_ID = machine_id(_SIMULATED, QUIET_HOSTNAME)
FIN_014_ID = machine_id(_SIMULATED, "ws-fin-014.contoso.local")
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
