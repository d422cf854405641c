"""The Defender client over real sockets on 127.0.0.1: a server that fails first, and a refused port."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpcore._sync.http11
import pytest

from bot.defender.client import DefenderClient
from bot.defender.errors import DefenderUnavailable
from bot.demo.clock import FakeClock
from tests.doubles.defender import CountingTokens
from tests.doubles.defender import nth_machine_id as machine_id

MID = machine_id(7)


def alert(n: int, **fields: object) -> dict[str, object]:
    return {"id": f"da{n}_1", "title": f"alert {n}", "severity": "High", "status": "New", "machineId": MID, **fields}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# A real socket ----------------------------------------------------------------------------------


class _Flaky(BaseHTTPRequestHandler):
    """Answers 500 to the first request of each path, then a page with one alert."""

    seen: ClassVar[set[str]] = set()
    lock: ClassVar[threading.Lock] = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            first = self.path not in self.seen
            self.seen.add(self.path)
        body = json.dumps({"error": {"code": "InternalServerError"}} if first else {"value": [alert(1)]}).encode()
        self.send_response(500 if first else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test asserts on behaviour, not on the access log."""


@pytest.fixture
def flaky_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_real_server_5xx_then_success(flaky_server: str, clock: FakeClock) -> None:
    client = DefenderClient(flaky_server, CountingTokens(), clock=clock, sleep=clock.sleep)
    with client:
        assert [a.id for a in client.get_device_alerts(MID)] == ["da1_1"]


def test_real_connection_refused_is_unavailable(clock: FakeClock) -> None:
    probe = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    port = probe.server_address[1]
    probe.server_close()  # nothing listens there now
    client = DefenderClient(f"http://127.0.0.1:{port}", CountingTokens(), clock=clock, sleep=clock.sleep)
    with client, pytest.raises(DefenderUnavailable, match="ConnectError"):
        client.get_device_alerts(MID)


class _KeepAlive(BaseHTTPRequestHandler):
    """HTTP/1.1 with persistent connections; counts the connections it accepted."""

    protocol_version = "HTTP/1.1"
    connections: ClassVar[list[object]] = []

    def setup(self) -> None:
        super().setup()
        self.connections.append(self.client_address)

    def do_GET(self) -> None:
        body = json.dumps({"value": [alert(1)]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test asserts on behaviour, not on the access log."""


class _IdleTime:
    """Stands in for the `time` module inside httpcore's HTTP/1.1 connection: `monotonic()` is settable."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def monotonic(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


def test_a_lookup_a_minute_after_the_last_reuses_its_connection(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    idle = _IdleTime()
    monkeypatch.setattr(httpcore._sync.http11, "time", idle)
    _KeepAlive.connections = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = DefenderClient(f"http://127.0.0.1:{server.server_address[1]}", CountingTokens(), clock=clock)
    try:
        with client:
            client.get_device_alerts(MID)
            idle.now += 60.0  # httpx's default would have closed it after 5 s
            client.get_device_alerts(MID)
            assert len(_KeepAlive.connections) == 1
            idle.now += 600.0  # well past the keep-alive: a new connection, no error
            client.get_device_alerts(MID)
            assert len(_KeepAlive.connections) == 2
    finally:
        server.shutdown()
        server.server_close()
