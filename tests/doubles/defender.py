"""Defender's side of the tests: the simulator behind a real HTTP socket, machine ids, and what each API shows.

`DefenderServer` serves a `SimulatedTenant` on 127.0.0.1 (to in-process clients and to bot processes alike),
logs every request with its time, and can misbehave on purpose until cleared: one switchable `Fault` (an error
status, no answer, a refused connection, a body that is not JSON or is cut short, a slow answer) and tokens
that are revoked. It serves both APIs: Defender for Endpoint's and Microsoft Graph's (alerts_v2, and
runHuntingQuery by POST). Read timeouts, refused connections and bodies cut mid-stream are the real thing for
httpx.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from bot.alerts.mirror import GraphAlertSource
from bot.defender.auth import StaticTokenProvider
from bot.defender.graph import ALERTS_PATH, HUNTING_PATH, GraphClient
from bot.defender.session import CallGate
from bot.defender.simulator import GRAPH_SIMULATOR_BASE_URL, SimulatedTenant, SimulatorTransport
from bot.defender.simulator.graph import lateral_peer
from bot.demo.clock import FakeClock
from bot.state.mirror import MirrorStore

TARPIT = 5.0  # how long a "timeout" answer is held back at most (far past any read timeout the tests set)
# Headers of the simulator's answer that the HTTP server itself sets.
_HOP_BY_HOP = ("content-length", "transfer-encoding", "connection", "content-encoding")


def machine_id(tenant: SimulatedTenant, hostname: str) -> str:
    """The id of the device named `hostname` (of the newest record, as Defender resolves a duplicate name)."""
    found = [m for m in tenant.machines if m["computerDnsName"] == hostname]
    return str(max(found, key=lambda m: str(m["lastSeen"]))["id"])


def nth_machine_id(n: int) -> str:
    """A distinct, valid 40-hex machine id per integer (for devices no tenant needs to know)."""
    return f"{n:040x}"


def shown_alerts(tenant: SimulatedTenant, machine_id: str, api: str) -> list[dict[str, Any]]:
    """The tenant's alerts a device's card shows through `api` (`mde` or `graph`).

    Through Graph an alert belongs to every device of its evidence: the built-in lateral-movement alerts also
    name their peer device, and `SimulatedTenant.link_device` adds more; Defender's API shows one `machineId`.
    """
    if api == "mde":
        return [a for a in tenant.alerts if a["machineId"] == machine_id]
    devices = [
        (a, a["machineId"], lateral_peer(a, tenant.machines), *tenant.links.get(a["id"], [])) for a in tenant.alerts
    ]
    return [alert for alert, *ids in devices if machine_id in ids]


def graph_since(path: str) -> datetime:
    """The `lastUpdateDateTime ge …` bound of an alerts_v2 request path: how far back the mirror read."""
    found = re.search(r"lastUpdateDateTime ge (\S+?Z)", path)
    assert found, path
    return datetime.fromisoformat(found[1])


def graph_source(
    tenant: SimulatedTenant,
    *,
    gate: CallGate | None = None,
    clock: FakeClock | None = None,
    now: Callable[[], datetime] | None = None,
    store: MirrorStore | None = None,
    backfill: timedelta = timedelta(days=30),
) -> GraphAlertSource:
    """The Graph alert mirror over a `GraphClient` on the simulator, as `DEFENDER_API=graph` builds it.

    `clock` is the client's (its retry waits cost no real time); `now` the mirror's wall clock, which dates its
    syncs (`clock.wall` for a tenant on a fake clock).
    """
    client = GraphClient(
        GRAPH_SIMULATOR_BASE_URL,
        StaticTokenProvider("simulator"),
        gate=gate,
        transport=SimulatorTransport(tenant),
        clock=clock or time.monotonic,
        sleep=clock.sleep if clock is not None else time.sleep,
    )
    return GraphAlertSource(client, store, backfill=backfill, now=now or (lambda: datetime.now(UTC)))


def kind_of(path: str) -> str:
    """Which API a request path (with its query) is for: alerts, machine-alerts, machines or machine (Defender
    for Endpoint), graph-alerts or graph-hunting (Microsoft Graph)."""
    bare = path.split("?")[0]
    if bare == ALERTS_PATH:
        return "graph-alerts"
    if bare == HUNTING_PATH:
        return "graph-hunting"
    if bare.endswith("/alerts"):
        return "alerts" if bare == "/api/alerts" else "machine-alerts"
    return "machines" if bare == "/api/machines" else "machine"


@dataclass(frozen=True)
class Fault:
    """What Defender does wrong until it is cleared.

    kind: "status" (answer `status`, with `retry_after` as the header when set), "timeout" (no answer before the
    client's read timeout), "refused" (nothing listens on the port), "malformed" (200 with a body that is not
    JSON), "truncated" (200 with the JSON cut in half, lengths consistent), "dropped" (the connection closes
    halfway through the announced body) or "slow" (the right answer, after `delay` seconds).
    """

    kind: str
    status: int = 500
    retry_after: str | None = None
    delay: float = 0.0


@dataclass
class DefenderLog:
    """Every request the server received: (monotonic time, path with query)."""

    requests: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str) -> None:
        with self.lock:
            self.requests.append((time.monotonic(), path))

    def of(self, kind: str) -> list[tuple[float, str]]:
        """The requests for one API (`kind_of`)."""
        with self.lock:
            return [(t, p) for t, p in self.requests if kind_of(p) == kind]


class CountingTokens:
    """Hands out token-1, token-2, … and counts invalidations."""

    def __init__(self) -> None:
        self.issued = 0
        self.invalidated = 0
        self._current: str | None = None

    def token(self) -> str:
        if self._current is None:
            self.issued += 1
            self._current = f"token-{self.issued}"
        return self._current

    def invalidate(self) -> None:
        self.invalidated += 1
        self._current = None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a timeout, a killed process) leaves a broken pipe behind: expected here."""


class DefenderServer:
    """The simulated tenant served over HTTP on 127.0.0.1, with one switchable fault and revocable tokens.

    `keep_alive` answers in HTTP/1.1 and keeps connections open (bot processes under load); without it every
    answer closes its connection, so a "refused" fault reaches clients that pooled one.
    """

    def __init__(self, tenant: SimulatedTenant, *, keep_alive: bool = False) -> None:
        self.tenant = tenant
        self.keep_alive = keep_alive
        self.log = DefenderLog()
        self.fault: Fault | None = None
        self.revoked: set[str] = set()
        self.tokens: list[str] = []  # bearer tokens seen, in order of first use (kept in memory only)
        self.rejected = 0  # 401s for revoked tokens
        self.connections: set[int] = set()  # the client ports requests came from: one per connection opened
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: _QuietServer | None = None
        self.port = 0
        self._listen()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> int:
        """How many requests arrived, answered or not."""
        with self.log.lock:
            return len(self.log.requests)

    def _listen(self) -> None:
        server = _QuietServer(("127.0.0.1", self.port), self._handler())
        self.port = server.server_address[1]
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="defender-http"
        ).start()
        self._server = server

    def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self.fault = fault
            self._release = threading.Event()
        if fault.kind == "refused":
            self._stop_listening()

    def clear(self) -> None:
        with self._lock:
            self.fault = None
            self._release.set()  # answers held back by a "timeout" fault give up now
        if self._server is None:
            self._listen()  # same port: the client's base URL is unchanged

    def close(self) -> None:
        self.clear()
        self._stop_listening()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        rig = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if rig.keep_alive else "HTTP/1.0"

            def do_POST(self) -> None:  # Microsoft Graph's runHuntingQuery
                self.do_GET()

            def do_GET(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                content = self.rfile.read(length) if length else b""
                rig.log.add(self.path)
                authorization = self.headers.get("Authorization") or ""
                token = authorization.removeprefix("Bearer ")
                with rig._lock:
                    rig.connections.add(self.client_address[1])
                    fault, release = rig.fault, rig._release
                    if token and token not in rig.tokens:
                        rig.tokens.append(token)
                    revoked = token in rig.revoked
                if fault is not None and fault.kind == "timeout":
                    release.wait(TARPIT)
                    self.close_connection = True
                    return  # no answer at all: the client's read timeout has long fired
                if fault is not None and fault.kind == "slow":
                    time.sleep(fault.delay)
                if revoked:
                    with rig._lock:
                        rig.rejected += 1
                    self._error(401, "Unauthorized", "The access token has been revoked")
                    return
                if fault is not None and fault.kind == "status":
                    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                    self._error(fault.status, httpx.codes.get_reason_phrase(fault.status), "Injected fault", headers)
                    return
                request = httpx.Request(
                    self.command, rig.base_url + self.path, headers=dict(self.headers.items()), content=content
                )
                answer = rig.tenant.serve(request)
                body = answer.read()
                if fault is not None and fault.kind == "malformed":
                    body = b"<html><body>Upstream error</body></html>"
                elif fault is not None and fault.kind == "truncated":
                    body = body[: len(body) // 2]
                elif fault is not None and fault.kind == "dropped":
                    self.send_response(answer.status_code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                extra = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
                self._send(answer.status_code, body, extra)

            def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
                envelope = {"error": {"code": code.replace(" ", ""), "message": message, "target": str(uuid.uuid4())}}
                kind = {"Content-Type": "application/json; charset=utf-8"}
                self._send(status, json.dumps(envelope).encode(), {**kind, **(headers or {})})

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response_only(status)  # its Date is the tenant's (Defender's clock), not this host's
                for key, value in {"Date": self.date_time_string(), **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the tests assert on what the bot did, and on `log`."""

        return Handler
