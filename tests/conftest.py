"""Suite-wide checks and settings.

Tiers: `tests/unit/<package>/` (one bot package at a time, in process), `tests/integration/` (real HTTP servers
on 127.0.0.1, signed Slack requests, MSAL over HTTPS, the Slack stand-in; one process) and `tests/system/`
(several processes, crashes and kill -9, fault runs, Redis scale-out, the benchmarks, the long property runs).
Every test under `tests/system/` gets the `system` marker here, so `python -m pytest -m "not system"` is the
fast loop and `python -m pytest` runs everything. Shared doubles live in `tests/doubles/`.

Secret hygiene: every test runs with a handler on the root logger at DEBUG that scans each record (message and
exception text) for the fake secrets of `tests/doubles/secrets.py`, and every payload a `SlackStandIn` receives
(Web API arguments and response_url bodies, refused ones included; `SlackStandIn.observe`) is scanned the same
way. A test during which a secret showed up fails in its teardown. A test that has to show a secret on purpose
says so with `@pytest.mark.secrets_visible`; its leaks are counted apart.

Both Defender APIs: a test (or a fixture it uses) that asks for `defender_api` runs once per API, with ids
`[mde]` and `[graph]` (`DEFENDER_APIS`). `@pytest.mark.defender_api("mde", reason="…")` keeps it to the APIs
named, and says why.

Hypothesis: the `hardening` profile (at least 2,000 examples, no deadline) is registered here and applied on the
decorators of the tests that want it, so other property tests keep their own counts.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from slack_sdk.http_retry import builtin_handlers as slack_builtin_handlers
from slack_sdk.http_retry import handler as slack_handlers

from bot.demo.standin import SlackStandIn
from tests.doubles import secrets as fake_secrets

SECRETS_VISIBLE = "secrets_visible"
SYSTEM = "system"
DEFENDER_API = "defender_api"
DEFENDER_APIS = ("mde", "graph")  # `DEFENDER_API`'s values: the Defender for Endpoint API, Microsoft Graph
SYSTEM_TESTS = Path(__file__).resolve().parent / "system"

settings.register_profile(
    "hardening",
    max_examples=2000,
    deadline=None,
    database=None,  # nothing written into the working tree; a failure prints its example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@dataclass(frozen=True, slots=True)
class Leak:
    where: str  # "log" or "slack"
    source: str  # logger name, or the Slack method / response_url name
    secrets: tuple[str, ...]
    excerpt: str


@dataclass
class Ledger:
    """What the hygiene checks saw, over the whole session: counts, and every leak found."""

    log_records: int = 0
    slack_payloads: int = 0
    leaks: list[Leak] = field(default_factory=list)
    excused: int = 0  # leaks during tests marked secrets_visible
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check(self, where: str, source: str, text: str) -> None:
        found = fake_secrets.leaks(text)
        with self._lock:
            if where == "log":
                self.log_records += 1
            else:
                self.slack_payloads += 1
            if found:
                start = max(0, text.find(found[0]) - 80)
                self.leaks.append(Leak(where, source, tuple(found), text[start : start + 240]))

    def leaks_since(self, index: int) -> list[Leak]:
        with self._lock:
            return self.leaks[index:]

    def mark(self) -> int:
        with self._lock:
            return len(self.leaks)


LEDGER = Ledger()


class SecretScanner(logging.Handler):
    """Scans each record: its logger name, its message, and its exception (message and traceback)."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(logging.DEBUG)
        self._ledger = ledger
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is still scanned as raw text
            message = f"{record.msg!r} {record.args!r}"
        parts = [record.name, message]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(self._formatter.formatException(record.exc_info))
        if record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(record.stack_info)
        self._ledger.check("log", record.name, "\n".join(parts))


def scan_payload(ledger: Ledger, source: str, payload: Any) -> None:
    try:
        text = json.dumps(payload, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(payload)
    ledger.check("slack", source, text)


_SCANNER = SecretScanner(LEDGER)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{SECRETS_VISIBLE}: the test puts a fake secret in a log or a Slack payload on purpose "
        "(the hygiene check counts it instead of failing)",
    )
    config.addinivalue_line(
        "markers",
        f"{SYSTEM}: a system test (tests/system/, set automatically): several processes, crashes, fault runs, "
        "scale-out, benchmarks, long property runs; `-m 'not system'` leaves them out of the fast loop",
    )
    config.addinivalue_line(
        "markers",
        f"{DEFENDER_API}(*apis, reason): a test using the `defender_api` fixture runs for these APIs only "
        f"(of {', '.join(DEFENDER_APIS)}), for the reason given",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses `defender_api`, directly or through a fixture, runs once per API it is marked for;
    a marked test that does not use it (it builds its own client) still carries the API in its id."""
    marker = metafunc.definition.get_closest_marker(DEFENDER_API)
    if DEFENDER_API not in metafunc.fixturenames:
        if marker is None:
            return
        metafunc.fixturenames.append(DEFENDER_API)
    apis: tuple[str, ...] = DEFENDER_APIS
    if marker is not None:
        apis = tuple(marker.args)
        if not apis or set(apis) - set(DEFENDER_APIS) or not marker.kwargs.get("reason"):
            raise pytest.UsageError(f"{metafunc.definition.nodeid}: {DEFENDER_API}(*{DEFENDER_APIS}, reason='…')")
    metafunc.parametrize(DEFENDER_API, apis, ids=apis, scope="function")


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(SYSTEM_TESTS):
            item.add_marker(SYSTEM)


@pytest.fixture(scope="session", autouse=True)
def _scan_standin_payloads() -> Iterator[None]:
    """Every Web API call and response_url body any stand-in receives is scanned, for the whole session."""
    stop = SlackStandIn.observe(lambda source, payload: scan_payload(LEDGER, source, payload))
    try:
        yield
    finally:
        stop()


@pytest.fixture(autouse=True)
def secret_hygiene(request: pytest.FixtureRequest) -> Iterator[Ledger]:
    """Scan every log record at DEBUG during the test; fail the test if a fake secret was logged or posted."""
    root = logging.getLogger()
    level = root.level
    root.addHandler(_SCANNER)
    root.setLevel(logging.DEBUG)
    start = LEDGER.mark()
    try:
        yield LEDGER
    finally:
        root.removeHandler(_SCANNER)
        root.setLevel(level)
    leaks = LEDGER.leaks_since(start)
    if request.node.get_closest_marker(SECRETS_VISIBLE):
        LEDGER.excused += len(leaks)
        return
    assert not leaks, "a fake secret leaked:\n" + "\n".join(
        f"  {leak.where} {leak.source}: {', '.join(leak.secrets)} in …{leak.excerpt!r}…" for leak in leaks
    )


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What the command line sees on a fresh machine: no Defender, cache or log variables, and a working
    directory with no `.env`, so it falls back to the built-in simulator unless a test configures it otherwise."""
    for name in list(os.environ):
        if name.startswith(("DEFENDER_", "ALERT_")) or name == "LOG_LEVEL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env from the project or the caller


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if terminalreporter.config.pluginmanager.getplugin("dsession") is not None:
        # Under pytest-xdist (`-n`) the workers keep the counts; a leak still fails the test it happened in.
        terminalreporter.write_line("secret hygiene: checked in each test by the xdist workers")
        return
    unexcused = len(LEDGER.leaks) - LEDGER.excused
    planted = f" ({LEDGER.excused} planted on purpose)" if LEDGER.excused else ""
    terminalreporter.write_line(
        f"secret hygiene: {LEDGER.log_records} log records and {LEDGER.slack_payloads} Slack payloads checked, "
        f"{unexcused} leaks{planted}"
    )


@pytest.fixture
def slack_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The Slack SDK's retry waits (Retry-After, backoff), recorded instead of slept."""
    waits: list[float] = []
    fake = SimpleNamespace(sleep=waits.append)
    monkeypatch.setattr(slack_handlers, "time", fake)
    monkeypatch.setattr(slack_builtin_handlers, "time", fake)
    return waits
