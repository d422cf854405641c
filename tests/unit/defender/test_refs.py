"""Device references: what `parse_device_ref` accepts, and proof that nothing else ever reaches a URL."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from bot.defender.auth import StaticTokenProvider
from bot.defender.client import DefenderClient
from bot.defender.errors import DefenderError, DeviceNotFound, InvalidDeviceReference
from bot.defender.refs import (
    MAX_HOSTNAME_LENGTH,
    DeviceRef,
    RefKind,
    odata_literal,
    parse_device_ref,
    path_segment,
)

HEX40 = "111e6dd8c833c8a052ea231ec1b19adaf497b625"
MACHINE_RECORD_ID = "0123456789abcdef0123456789abcdef01234567"
SAFE_VALUE = re.compile(r"[0-9a-z][0-9a-z._-]*")
MACHINE_PATH = re.compile(r"/api/machines/([0-9a-z._-]+)")
ALERTS_PATH = re.compile(r"/api/machines/([0-9a-f]{40})/alerts")
FILTER_EQ = re.compile(r"computerDnsName eq '((?:[^']|'')*)'")
FILTER_PREFIX = re.compile(r"startswith\(computerDnsName,'((?:[^']|'')*)'\)")


# Accepted references -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEX40, HEX40),
        (HEX40.upper(), HEX40),
        ("111E6dd8C833c8a052ea231ec1b19adaf497b625", HEX40),
        ("0" * 40, "0" * 40),
    ],
)
def test_forty_hex_characters_are_a_lowercased_machine_id(text: str, expected: str) -> None:
    ref = parse_device_ref(text)
    assert ref == DeviceRef(RefKind.MACHINE_ID, expected)
    assert ref.is_machine_id is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ws-fin-014", "ws-fin-014"),
        ("WS-FIN-014", "ws-fin-014"),
        ("temp123.middleeast.corp.microsoft.com", "temp123.middleeast.corp.microsoft.com"),
        ("Temp123.MiddleEast.Corp.Microsoft.COM", "temp123.middleeast.corp.microsoft.com"),
        ("host.example.com.", "host.example.com"),
        ("HOST.", "host"),
        ("a", "a"),
        ("7", "7"),
        ("ws_fin_014", "ws_fin_014"),
        ("ws_fin.corp_net.local", "ws_fin.corp_net.local"),
        ("a-", "a-"),  # trailing hyphen is tolerated
        ("a.-b", "a.-b"),  # labels after the first may start with '-' or '_' (lenient, still URL-safe)
        ("a._b", "a._b"),
    ],
)
def test_hostnames_and_fqdns_are_lowercased_without_trailing_dot(text: str, expected: str) -> None:
    ref = parse_device_ref(text)
    assert ref == DeviceRef(RefKind.HOSTNAME, expected)
    assert ref.is_machine_id is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("f" * 39, "f" * 39),
        ("F" * 41, "f" * 41),
        (HEX40[:-1], HEX40[:-1]),
        (HEX40 + "0", HEX40 + "0"),
        (HEX40[:-1] + "g", HEX40[:-1] + "g"),  # 40 characters, one not hex
    ],
)
def test_near_machine_ids_are_hostnames(text: str, expected: str) -> None:
    assert parse_device_ref(text) == DeviceRef(RefKind.HOSTNAME, expected)


def test_forty_hex_with_a_trailing_dot_is_a_hostname() -> None:
    # The machine-id pattern is checked on the raw text, so the FQDN form of a hex id stays a hostname.
    assert parse_device_ref(HEX40.upper() + ".") == DeviceRef(RefKind.HOSTNAME, HEX40)


def test_hostname_length_limit_is_255_characters() -> None:
    longest = "a" * MAX_HOSTNAME_LENGTH
    assert MAX_HOSTNAME_LENGTH == 255
    assert parse_device_ref(longest) == DeviceRef(RefKind.HOSTNAME, longest)
    labelled = ".".join(["abcdefg"] * 32)[:MAX_HOSTNAME_LENGTH]
    assert parse_device_ref(labelled).value == labelled
    with pytest.raises(InvalidDeviceReference, match="at most 255"):
        parse_device_ref("a" * (MAX_HOSTNAME_LENGTH + 1))
    with pytest.raises(InvalidDeviceReference, match="at most 255"):
        parse_device_ref("a" * MAX_HOSTNAME_LENGTH + ".")


# Refused references --------------------------------------------------------------------------


def test_empty_reference_is_refused_with_a_hint() -> None:
    with pytest.raises(InvalidDeviceReference, match="a device reference is required") as caught:
        parse_device_ref("")
    assert isinstance(caught.value, DefenderError)


@pytest.mark.parametrize(
    "text",
    [
        "../x",
        "..",
        ".",
        "..%2f",
        "%2e%2e",
        "%2E%2E%2Fmachines",
        "a/b",
        "a\\b",
        "a?b",
        "a#b",
        "a%b",
        "a&b",
        "a;b",
        "a:b",
        "a=b",
        "a+b",
        "a@b",
        "a'b",
        "o'brien",
        'a"b',
        "'",
        "a b",
        " a",
        "a ",
        "a\tb",
        "a\nb",
        "a\n",
        "a\r\nb",
        "a\x00b",
        "\x00",
        "a\x7fb",
        "a\u200bb",  # zero-width space
        "a\u00a0b",  # no-break space
        "ws\u2010fin",  # unicode hyphen
        "\uff57\uff53-fin",  # fullwidth 'ws'
        "w\u0455-fin",  # Cyrillic dze for 's'
        "h\u00f6st",
        "\u0131\u0307",
        "\u0661\u0662",  # Arabic-Indic digits
        "-a",
        "-",
        ".a",
        "_a",
        "a..b",
        "a.b..",
        "a..",
        HEX40 + "/alerts",
        HEX40 + "?x=1",
        HEX40 + " ",
        " " + HEX40,
    ],
)
def test_path_tricks_quotes_whitespace_and_lookalikes_are_refused(text: str) -> None:
    with pytest.raises(InvalidDeviceReference, match=r"not a machine id \(40 hex characters\) or a hostname"):
        parse_device_ref(text)


# Encoding helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("o'brien", "'o''brien'"),
        ("plain", "'plain'"),
        ("", "''"),
        ("''", "''''''"),
        ("a'b'c", "'a''b''c'"),
    ],
)
def test_odata_literal_doubles_single_quotes(value: str, literal: str) -> None:
    assert odata_literal(value) == literal


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("a/b", "a%2Fb"),
        ("a?b", "a%3Fb"),
        ("a#b", "a%23b"),
        ("100%", "100%25"),
        ("%2e%2e", "%252e%252e"),
        ("a b", "a%20b"),
        ("ws-fin_01.corp", "ws-fin_01.corp"),
        (HEX40, HEX40),
    ],
)
def test_path_segment_percent_encodes_reserved_characters(value: str, segment: str) -> None:
    assert path_segment(value) == segment


@given(st.text())
def test_path_segment_never_leaves_a_separator(value: str) -> None:
    encoded = path_segment(value)
    assert not set(encoded) & set("/?#\\ ")
    assert re.fullmatch(r"[A-Za-z0-9._~%-]*", encoded)


# The client never sends an unvalidated reference ---------------------------------------------


class Recorder:
    """A MockTransport handler that remembers every request and answers a plausible body."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        # A hostname may well be "alerts": only the exact collection shapes get a collection.
        if request.url.path == "/api/machines" or ALERTS_PATH.fullmatch(request.url.path):
            return httpx.Response(200, json={"value": []})
        return httpx.Response(200, json={"id": MACHINE_RECORD_ID})


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def client(recorder: Recorder) -> Iterator[DefenderClient]:
    with DefenderClient(
        base_url="https://api.test", tokens=StaticTokenProvider("t"), transport=httpx.MockTransport(recorder)
    ) as defender:
        yield defender


def _only_request(recorder: Recorder) -> httpx.Request:
    assert len(recorder.requests) == 1, recorder.requests
    request = recorder.requests[0]
    assert request.method == "GET"
    assert request.url.scheme == "https"
    assert request.url.host == "api.test"
    assert request.headers["Authorization"] == "Bearer t"
    return request


def _unquote_literal(quoted: str) -> str:
    return quoted.replace("''", "'")


HOSTNAME_CHARS = "abcXYZ019-_."
HEX_CHARS = "0123456789abcdefABCDEF"
FRAGMENTS = [
    "../",
    "..",
    ".",
    "/",
    "\\",
    "%2e",
    "%2E",
    "%2f",
    "%00",
    "%",
    "?",
    "#",
    "&",
    "$filter=",
    "'",
    "''",
    '"',
    " ",
    "\t",
    "\n",
    "\r",
    "\x00",
    "\x1b",
    "\u200b",
    "\uff0e",  # fullwidth full stop
    "\u2215",  # division slash
    "\u0430",  # Cyrillic a
    "\u0130",  # dotted capital I (lowercases to two code points)
    ":",
    "@",
    "-",
    "_",
    "eq",
    " or ",
    ")",
    "(",
]
tricky_references = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.sampled_from(list(HOSTNAME_CHARS)), st.sampled_from(list(HEX_CHARS))),
    max_size=24,
).map("".join)
hex_references = st.one_of(
    st.text(alphabet=HEX_CHARS, min_size=40, max_size=40),
    st.text(alphabet=HEX_CHARS, min_size=38, max_size=42),
    st.builds(
        lambda head, hexes, tail: head + hexes + tail,
        st.sampled_from(["", "", "", " ", "../", "/", "%2e", "'"]),
        st.text(alphabet=HEX_CHARS, min_size=40, max_size=40),
        st.sampled_from(["", "", "", ".", "/", "/alerts", "/../x", "%2f", "?", "#", "'", " ", "\n"]),
    ),
)
hostname_references = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}(\.[A-Za-z0-9_-]{1,20}){0,4}\.?", fullmatch=True)
any_reference = st.one_of(st.text(), st.text(alphabet=st.characters(codec="ascii")), tricky_references)
any_reference = st.one_of(any_reference, hex_references, hostname_references)


def _expected_ref(text: str) -> DeviceRef | None:
    try:
        return parse_device_ref(text)
    except InvalidDeviceReference:
        return None


@settings(max_examples=2000, deadline=None)
@given(text=any_reference)
@example(text="../x")
@example(text="%2e%2e")
@example(text="a/b")
@example(text="o'brien")
@example(text=HEX40.upper())
@example(text=HEX40 + ".")
@example(text="ws-fin-014.corp.")
@example(text="alerts")
def test_client_only_sends_validated_references(client: DefenderClient, recorder: Recorder, text: str) -> None:
    expected = _expected_ref(text)
    event("refused" if expected is None else expected.kind.value)
    if expected is not None:
        # Independently of parse_device_ref: whatever it accepts is URL- and OData-inert.
        assert SAFE_VALUE.fullmatch(expected.value), expected
        assert ".." not in expected.value
        assert expected.value == expected.value.lower()
        assert len(expected.value) <= MAX_HOSTNAME_LENGTH

    # GET /api/machines/{id}; a name goes through the $filter below (its records, newest chosen)
    recorder.requests.clear()
    if expected is None:
        with pytest.raises(InvalidDeviceReference):
            client.get_machine(text)
        assert recorder.requests == []
    elif expected.kind is RefKind.MACHINE_ID:
        machine = client.get_machine(text)
        assert machine.id == MACHINE_RECORD_ID
        request = _only_request(recorder)
        match = MACHINE_PATH.fullmatch(request.url.raw_path.decode("ascii"))
        assert match is not None, request.url
        assert match[1] == expected.value
        assert request.url.path == f"/api/machines/{expected.value}"
        assert request.url.query == b""
    else:
        with pytest.raises(DeviceNotFound):  # the recorder lists no records
            client.get_machine(text)
        assert _only_request(recorder).url.params["$filter"] == f"computerDnsName eq {odata_literal(expected.value)}"

    # GET /api/machines/{id}/alerts: machine ids only
    recorder.requests.clear()
    if expected is None or expected.kind is not RefKind.MACHINE_ID:
        with pytest.raises(InvalidDeviceReference):
            client.get_device_alerts(text)
        assert recorder.requests == []
    else:
        assert client.get_device_alerts(text) == []
        request = _only_request(recorder)
        match = ALERTS_PATH.fullmatch(request.url.raw_path.decode("ascii"))
        assert match is not None, request.url
        assert match[1] == expected.value
        assert request.url.query == b""

    # GET /api/machines?$filter=...
    for prefix, pattern in ((False, FILTER_EQ), (True, FILTER_PREFIX)):
        recorder.requests.clear()
        if expected is None:
            with pytest.raises(InvalidDeviceReference):
                client.find_machines(text, prefix=prefix)
            assert recorder.requests == []
            continue
        assert client.find_machines(text, prefix=prefix) == []
        request = _only_request(recorder)
        assert request.url.path == "/api/machines"
        assert request.url.raw_path.startswith(b"/api/machines?")
        assert list(request.url.params.keys()) == (["$filter", "$top"] if prefix else ["$filter"])
        odata = request.url.params["$filter"]
        found = pattern.fullmatch(odata)
        assert found is not None, odata
        assert _unquote_literal(found[1]) == expected.value
        assert odata_literal(_unquote_literal(found[1])) == f"'{found[1]}'"


@given(st.text(alphabet=HEX_CHARS, min_size=40, max_size=40))
def test_any_forty_hex_string_is_a_machine_id(text: str) -> None:
    assert parse_device_ref(text) == DeviceRef(RefKind.MACHINE_ID, text.lower())


@given(hostname_references)
def test_generated_hostnames_are_accepted_and_normalised(text: str) -> None:
    ref = parse_device_ref(text)
    assert ref.value == text.rstrip(".").lower()
    if re.fullmatch(r"[0-9a-fA-F]{40}", text):
        assert ref.kind is RefKind.MACHINE_ID
    else:
        assert ref.kind is RefKind.HOSTNAME
