"""The terminal command: `python -m bot alerts …`, driven in-process through `main`.

Each test starts from an environment with no Defender, cache or log variables and a working directory
with no `.env`, so the CLI falls back to the built-in simulator unless a test configures it otherwise.
`main(["demo", …])` is in tests/integration/test_demo.py, `python -m bot` as a process in
tests/system/test_python_m_bot.py.
"""

from __future__ import annotations

import io
import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.alerts.query import USAGE
from bot.cli import main
from bot.defender.simulator import HOSTILE_HOSTNAME, QUIET_HOSTNAME
from tests.doubles import secrets as fake_secrets

SECRET = fake_secrets.DEFENDER_CLIENT_SECRET
SIMULATOR_NOTICE = "using the built-in Defender simulator"
ALERT_LINK = re.compile(r"^\s+(https://\S+)$", re.MULTILINE)
# `  [High         ] In progress Title…`: the severity in brackets, then the status label.
ALERT_ROW = re.compile(
    r"^  \[(?P<severity>[A-Za-z]+) *\] (?P<status>New|In progress|Resolved|Unknown) +\S", re.MULTILINE
)
SEVERITY_LINE = re.compile(r"^  Severity  (?P<counts>.+)$", re.MULTILINE)
INVISIBLE = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e")


# Every test starts from what a fresh machine has (conftest's `cli_env`).
pytestmark = pytest.mark.usefixtures("cli_env")


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def severity_counts(output: str) -> dict[str, int]:
    match = SEVERITY_LINE.search(output)
    assert match, output
    counts = {}
    for part in match["counts"].split(" · "):
        label, _, number = part.rpartition(" ")
        counts[label] = int(number)
    return counts


# -- a device lookup ----------------------------------------------------------------------------------------------


def test_lookup_by_short_hostname() -> None:
    code, out, err = run("alerts", "ws-fin-014")
    assert code == 0, out + err
    first = out.splitlines()[0]
    assert first.startswith("ws-fin-014.contoso.local: ")
    assert re.search(r"^  Severity  \S", out, re.MULTILINE)
    assert re.search(r"^  Status    \S", out, re.MULTILINE)
    links = ALERT_LINK.findall(out)
    rows = ALERT_ROW.findall(out)
    assert rows
    assert len(links) == len(rows)
    for link in links:
        assert link.startswith("https://security.microsoft.com/alerts/")
    # The header's count matches the Severity summary and the rows shown (fewer than the 10-row limit).
    total = int(re.match(r"ws-fin-014\.contoso\.local: (\d+) alerts?", first)[1])  # type: ignore[index]
    assert sum(severity_counts(out).values()) == total
    assert len(rows) == min(total, 10)


def test_lookup_says_on_stderr_that_the_simulator_is_used() -> None:
    code, out, err = run("alerts", "ws-fin-014")
    assert code == 0
    assert SIMULATOR_NOTICE in err
    assert SIMULATOR_NOTICE not in out


def test_explicit_simulator_backend_does_not_print_the_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFENDER_BACKEND", "simulator")
    code, out, err = run("alerts", "ws-fin-014")
    assert code == 0
    assert out.startswith("ws-fin-014.contoso.local: ")
    assert SIMULATOR_NOTICE not in err


def test_lookup_by_fqdn_in_any_case() -> None:
    code, out, _ = run("alerts", "WS-FIN-014.Contoso.Local")
    assert code == 0
    assert out.startswith("ws-fin-014.contoso.local: ")


def test_lookup_of_a_device_without_alerts() -> None:
    code, out, _ = run("alerts", QUIET_HOSTNAME)
    assert code == 0
    assert out.startswith(f"{QUIET_HOSTNAME}: 0 alerts")
    assert not ALERT_ROW.findall(out)


def test_lookup_by_machine_id() -> None:
    code, out, _ = run("alerts", "ws-fin-014")
    assert code == 0
    machine_id = re.search(r"machine ([0-9a-f]{40})", out)
    assert machine_id, out
    code, by_id, _ = run("alerts", machine_id[1].upper())
    assert code == 0
    assert by_id.startswith("ws-fin-014.contoso.local: ")
    assert machine_id[1] in by_id


# -- filters ---------------------------------------------------------------------------------------------------------


def test_severity_filter_shows_only_that_severity() -> None:
    _, unfiltered, _ = run("alerts", "ws-fin-014")
    high = severity_counts(unfiltered).get("High", 0)
    assert high > 0, "the simulated device is expected to have a High alert"
    code, out, _ = run("alerts", "ws-fin-014", "severity:high")
    assert code == 0
    rows = ALERT_ROW.findall(out)
    assert len(rows) == high
    assert {severity for severity, _ in rows} == {"High"}
    assert "filters: severity: High" in out
    assert severity_counts(out) == {"High": high}


def test_combined_filters_in_one_argument_or_several() -> None:
    code, out, _ = run("alerts", "ws-fin-014", "severity:high,medium", "status:new,inprogress")
    assert code == 0
    code_joined, out_joined, _ = run("alerts", "ws-fin-014 severity:high,medium status:new,inprogress")
    assert code_joined == 0
    rows = ALERT_ROW.findall(out)
    assert rows == ALERT_ROW.findall(out_joined)
    for severity, status in rows:
        assert severity in ("High", "Medium")
        assert status in ("New", "In progress")


def test_status_filter() -> None:
    code, out, _ = run("alerts", "ws-eng-666", "status:resolved")
    assert code == 0
    rows = ALERT_ROW.findall(out)
    assert rows
    assert {status for _, status in rows} == {"Resolved"}


@pytest.mark.parametrize(
    ("argument", "named"),
    [
        ("severity:urgent", "urgent"),
        ("status:closed", "closed"),
        ("since:forever", "forever"),
        ("since:365d", "180d"),
        ("colour:red", "colour"),
        ("severity:", "severity"),
    ],
)
def test_bad_filter_exits_2_with_the_value_and_usage(argument: str, named: str) -> None:
    code, out, err = run("alerts", "ws-fin-014", argument)
    assert code == 2
    shown = out + err
    assert named in shown
    assert f"usage: python -m bot alerts {USAGE}" in shown
    assert "ws-fin-014.contoso.local:" not in shown  # nothing was looked up


@pytest.mark.parametrize(
    "argv",
    [
        ["../etc"],
        ["../../etc/passwd"],
        ["a b"],
        ["ws-fin-014", "ws-fin-015"],
        ["'ws-fin-014'"],
        ['"ws-fin-014"'],
        ["ws-fin-014/../x"],
        ["ws-fin-014?$top=1"],
        ["%2e%2e"],
        ["ws\x1bfin"],
        ["x" * 600],
    ],
)
def test_invalid_reference_exits_2(argv: list[str]) -> None:
    code, out, err = run("alerts", *argv)
    assert code == 2
    assert "usage: python -m bot alerts" in out + err
    assert "ws-fin-014.contoso.local:" not in out + err


@pytest.mark.parametrize(
    "argv",
    [
        ["ws\x1b[2Jfin"],
        ["invoice\u202egpj.exe"],
        ["ws-fin-014", "sev\x1b[31mrity:high"],
        ["ws-fin-014", "severity:hi\x1b[31mgh"],
    ],
)
def test_bad_input_is_not_echoed_with_control_characters(argv: list[str]) -> None:
    code, out, err = run("alerts", *argv)
    assert code == 2
    for char in ("\x1b", *INVISIBLE):
        assert char not in out + err


# -- not found ------------------------------------------------------------------------------------------------------


def test_unknown_host_exits_3() -> None:
    code, out, err = run("alerts", "no-such-host-zz")
    assert code == 3
    assert "no-such-host-zz" in out + err
    assert "Did you mean" not in out + err


def test_unknown_machine_id_exits_3() -> None:
    code, out, err = run("alerts", "0" * 40)
    assert code == 3
    assert "0" * 40 in out + err


def test_ambiguous_prefix_exits_3_with_suggestions() -> None:
    code, out, err = run("alerts", "ws")
    assert code == 3
    shown = out + err
    assert "Did you mean" in shown
    assert "ws-fin-014.contoso.local" in shown
    assert "ws-fin-015.contoso.local" in shown
    assert "srv-" not in shown


# -- hostile alert text -----------------------------------------------------------------------------------------------


def test_hostile_device_output_has_no_control_or_invisible_characters() -> None:
    code, out, err = run("alerts", HOSTILE_HOSTNAME)
    assert code == 0
    assert out.startswith(f"{HOSTILE_HOSTNAME}: ")
    # The hostile alerts are really there, only defused.
    assert "CRITICAL" in out
    assert "payroll" in out
    for text in (out, err):
        assert "\x1b" not in text
        assert "\x07" not in text
        assert "\r" not in text
        for char in INVISIBLE:
            assert char not in text, repr(char)
        assert all(ch == "\n" or ch >= " " for ch in text), "a C0 control character got through"
    for line in out.splitlines():
        assert len(line) < 400, "a long hostile title was not cut"


# -- configuration and Defender errors ----------------------------------------------------------------------------


def test_config_error_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFENDER_BACKEND", "api")
    code, out, err = run("alerts", "ws-fin-014")
    assert code == 2
    assert err.startswith("configuration error: DEFENDER_TENANT_ID")
    assert out == ""


def test_config_error_from_dotenv_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DEFENDER_CALLS_PER_MINUTE=lots\n")
    code, out, err = run("alerts", "ws-fin-014")
    assert code == 2
    assert err.startswith("configuration error: DEFENDER_CALLS_PER_MINUTE")
    assert out == ""


def test_config_error_never_prints_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFENDER_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("DEFENDER_CLIENT_ID", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
    monkeypatch.setenv("DEFENDER_TENANT_ID", "not a tenant")
    code, out, err = run("alerts", "ws-fin-014")
    assert code == 2
    assert err.startswith("configuration error: DEFENDER_TENANT_ID")
    assert SECRET not in out + err


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connections are refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_defender_sign_in_failure_exits_4_without_leaking_the_secret(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, refused_port: int
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("DEFENDER_BACKEND", "api")
    monkeypatch.setenv("DEFENDER_TENANT_ID", "11111111-2222-3333-4444-555555555555")
    monkeypatch.setenv("DEFENDER_CLIENT_ID", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
    monkeypatch.setenv("DEFENDER_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("DEFENDER_AUTHORITY_URL", f"https://127.0.0.1:{refused_port}")
    caplog.set_level(logging.DEBUG)
    code, out, err = run("alerts", "ws-fin-014")
    assert code == 4, out + err
    shown = out + err
    assert shown.strip(), "a failure must say what went wrong"
    assert "identity provider" in shown or "sign in" in shown
    assert SIMULATOR_NOTICE not in err
    assert "ws-fin-014.contoso.local:" not in shown
    assert SECRET not in shown
    assert SECRET not in caplog.text
