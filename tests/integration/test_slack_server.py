"""The HTTP side through a real server on 127.0.0.1: acks under load, signatures, health and routing.

`python -m bot http` as its own process is in tests/system/test_python_m_bot.py.
"""

from __future__ import annotations

import logging
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.config import Secret
from bot.defender.limits import Api
from bot.defender.simulator import BUSY_HOSTNAME, DUPLICATE_HOSTNAME, SimulatedTenant
from bot.demo.slack_requests import SlackRequests
from bot.slack import server as server_module
from bot.slack import socket_mode
from bot.slack.bolt import SignatureCheck
from bot.slack.server import HttpServer, wsgi_app
from tests.doubles import secrets as fake_secrets
from tests.doubles.processes import free_port
from tests.doubles.slack import (
    COMMAND_ACK_BUDGET,
    SIGNING_SECRET,
    Harness,
    close_server,
    harness,
    header,
    shutdown_task_threads,
)


@dataclass
class Served:
    rig: Harness
    server: HttpServer
    client: httpx.Client

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/slack/events"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"


def serve(rig: Harness) -> Iterator[Served]:
    server = HttpServer(wsgi_app(rig.bot.health, SlackRequestHandler(rig.bot.app)), "127.0.0.1", 0).start()
    client = httpx.Client(timeout=10.0)
    try:
        yield Served(rig, server, client)
    finally:
        client.close()
        close_server(server)


@pytest.fixture
def served() -> Iterator[Served]:
    for rig in harness():
        yield from serve(rig)


@pytest.fixture
def slow() -> Iterator[Served]:
    for rig in harness(tenant=SimulatedTenant(latency=1.0)):
        yield from serve(rig)


# -- acknowledging under load ----------------------------------------------------------------------------------


def test_twenty_concurrent_commands_ack_within_three_seconds_while_defender_is_slow(slow: Served) -> None:
    rig = slow.rig
    assert rig.tenant.latency == 1.0
    assert rig.bot.pool.capacity == 16 + 256  # BOT_WORKERS / BOT_MAX_PENDING defaults
    # Ten distinct devices (one name per device, small alert lists), each asked for twice: once by id, once by name.
    seen: set[str] = set()
    devices: list[dict[str, Any]] = []
    for record in rig.tenant.machines:
        name = str(record["computerDnsName"])
        if name in seen or name in (BUSY_HOSTNAME, DUPLICATE_HOSTNAME) or " " in name:
            continue
        seen.add(name)
        devices.append(record)
    devices = devices[:10]
    assert len(devices) == 10
    lookups = [(str(d["id"]), d) for d in devices] + [(str(d["computerDnsName"]), d) for d in devices]
    requests = [
        rig.requests.command(text, response_url=rig.standin.response_url(f"r{index}"))
        for index, (text, _) in enumerate(lookups)
    ]
    start = threading.Barrier(len(requests))
    # One client for all senders, built before the clock starts: building a client per request loads the CA
    # bundle each time, and twenty of those in parallel would measure the GIL rather than the bot.
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=len(requests))

    with httpx.Client(timeout=10.0, limits=limits) as client:

        def send(request: tuple[bytes, dict[str, str]]) -> tuple[int, float, dict[str, Any]]:
            body, headers = request
            start.wait()
            began = time.perf_counter()
            response = client.post(slow.events_url, content=body, headers=headers)
            return response.status_code, time.perf_counter() - began, response.json()

        with ThreadPoolExecutor(max_workers=len(requests)) as senders:
            results = list(senders.map(send, requests))

    latencies = sorted(latency for _, latency, _ in results)
    print(f"\nack latency over {len(results)} commands: p50 {statistics.median(latencies) * 1000:.0f} ms, "
          f"max {latencies[-1] * 1000:.0f} ms")  # fmt: skip
    for (status, latency, ack), (text, _) in zip(results, lookups, strict=True):
        assert status == 200
        assert latency < COMMAND_ACK_BUDGET
        assert ack["text"] == f"Looking up {text}…"

    posts = rig.standin.wait_for_posts(20, timeout=30)
    assert len(posts) == 20
    by_target = {p.target: p for p in posts}
    for index, (_, record) in enumerate(lookups):
        card = by_target[f"r{index}"]
        assert card.payload["response_type"] == "in_channel"
        assert header(card).startswith(f"{record['computerDnsName']} · ")
    # Single flight and the cache: one alert-list request per device, however the device was named.
    asked = Counter(path.split("?")[0] for path in rig.alerts_requests())
    assert asked == {f"/api/machines/{d['id']}/alerts": 1 for d in devices}
    assert sum(asked.values()) <= 10


# -- request signatures ----------------------------------------------------------------------------------------


def _assert_refused(served: Served, body: bytes, headers: dict[str, str]) -> None:
    response = served.client.post(served.events_url, content=body, headers=headers)
    assert response.status_code == 401
    time.sleep(0.2)
    served.rig.wait_idle()
    assert served.rig.tenant.calls == 0
    assert served.rig.tenant.request_log == []
    assert served.rig.standin.posts == []


def test_a_signed_command_is_accepted(served: Served) -> None:
    body, headers = served.rig.requests.command("ws-fin-014", response_url=served.rig.standin.response_url("ok"))
    response = served.client.post(served.events_url, content=body, headers=headers)
    assert response.status_code == 200
    assert response.json()["text"] == "Looking up ws-fin-014…"
    [card] = served.rig.standin.wait_for_posts(1)
    assert header(card).startswith("ws-fin-014.contoso.local · ")


def test_missing_signature_headers_are_refused(served: Served) -> None:
    body, headers = served.rig.requests.command("ws-fin-014", response_url=served.rig.standin.response_url("x"))
    _assert_refused(served, body, {"Content-Type": headers["Content-Type"]})


def test_missing_timestamp_is_refused(served: Served) -> None:
    body, headers = served.rig.requests.command("ws-fin-014", response_url=served.rig.standin.response_url("x"))
    del headers["X-Slack-Request-Timestamp"]
    _assert_refused(served, body, headers)


def test_wrong_signature_is_refused(served: Served) -> None:
    forger = SlackRequests(fake_secrets.FOREIGN_SIGNING_SECRET)
    body, headers = forger.command("ws-fin-014", response_url=served.rig.standin.response_url("x"))
    _assert_refused(served, body, headers)


def test_stale_timestamp_is_refused(served: Served) -> None:
    replayer = SlackRequests(SIGNING_SECRET, clock=lambda: time.time() - 400)
    body, headers = replayer.command("ws-fin-014", response_url=served.rig.standin.response_url("x"))
    _assert_refused(served, body, headers)


def test_body_tampered_after_signing_is_refused(served: Served) -> None:
    body, headers = served.rig.requests.command("ws-fin-014", response_url=served.rig.standin.response_url("x"))
    tampered = body.replace(b"ws-fin-014", b"ws-fin-015")
    assert tampered != body
    _assert_refused(served, tampered, headers)


def test_unsigned_event_is_refused(served: Served) -> None:
    body, headers = served.rig.requests.event(served.rig.requests.mention("ws-fin-014"))
    headers["X-Slack-Signature"] = "v0=" + "0" * 64
    _assert_refused(served, body, headers)


# -- health and routing ----------------------------------------------------------------------------------------


def test_healthz_reports_status_without_secrets(served: Served) -> None:
    served.rig.command("ws-fin-014")
    served.rig.standin.wait_for_posts(1)
    served.rig.wait_idle()
    response = served.client.get(served.url("/healthz"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    health = response.json()
    assert health["status"] == "ok"
    assert health["defender_backend"] == "simulator"
    assert health["cached_devices"] == 1
    assert set(health["budget"]) == {api.value for api in Api}
    for usage in health["budget"].values():
        assert isinstance(usage["minute_left"], int)
        assert isinstance(usage["hour_left"], int)
    assert health["budget"]["machine-alerts"]["minute_left"] < health["budget"]["alerts"]["minute_left"]
    assert health["lookups"] == {"in_use": 0, "capacity": 272}
    text = response.text
    for secret in (SIGNING_SECRET, served.rig.standin.bot_token):
        assert secret not in text


def test_healthz_answers_head(served: Served) -> None:
    assert served.client.head(served.url("/healthz")).status_code == 200


def test_events_path_wants_post(served: Served) -> None:
    response = served.client.get(served.events_url)
    assert response.status_code == 405
    assert response.json() == {"error": "POST only"}


@pytest.mark.parametrize("path", ["/", "/slack", "/slack/events/x", "/healthz/", "/admin"])
def test_unknown_paths_are_404(served: Served, path: str) -> None:
    response = served.client.get(served.url(path))
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}


def test_post_to_healthz_is_404(served: Served) -> None:
    assert served.client.post(served.url("/healthz"), content=b"x").status_code == 404


def _waitress_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("waitress-") and t.is_alive()}


def test_closing_the_http_server_stops_its_threads() -> None:
    before = _waitress_threads()
    server = HttpServer(wsgi_app(lambda: {"status": "ok"}, None), "127.0.0.1", 0).start()
    try:
        assert httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5.0).status_code == 200
        assert len(_waitress_threads() - before) == 16  # REQUEST_THREADS
        server.close()
        assert _waitress_threads() - before == set()
    finally:
        shutdown_task_threads(server)  # clean up after the bug, whatever the outcome


def test_healthz_names_the_graph_api_and_how_fresh_its_mirror_is() -> None:
    runs = harness(api="graph")
    rig = next(runs)
    try:
        before = rig.bot.health()
        assert before["defender_api"] == "graph"
        assert before["graph_mirror"] == {"alerts": 0, "synced_at": None}  # nothing read before the first lookup
        rig.command("ws-fin-014")
        rig.standin.wait_for_posts(1)
        rig.wait_idle()
        mirror = rig.bot.health()["graph_mirror"]
        assert mirror["alerts"] > 0 and mirror["synced_at"] is not None
    finally:
        runs.close()


def test_healthz_has_no_mirror_on_the_mde_api(served: Served) -> None:
    health = served.client.get(served.url("/healthz")).json()
    assert health["defender_api"] == "mde" and "graph_mirror" not in health


# -- the bind address (BOT_HTTP_HOST) ----------------------------------------------------------------------------


def _answers_only_on(host: str, port: int) -> None:
    """`/healthz` answers on `host` (another loopback address than 127.0.0.1) and nothing listens on 127.0.0.1."""
    assert httpx.get(f"http://{host}:{port}/healthz", timeout=5.0).json()["status"] == "ok"
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2.0):
        pass


def test_serve_http_listens_on_the_configured_host() -> None:
    for rig in harness():
        port = free_port()
        bot = SimpleNamespace(
            app=rig.bot.app, settings=replace(rig.bot.settings, host="127.0.0.2", port=port),
            health=rig.bot.health, metrics=rig.bot.metrics, draining=threading.Event(),
        )  # fmt: skip
        server = server_module.serve_http(bot)
        try:
            _answers_only_on("127.0.0.2", port)
        finally:
            close_server(server)


def test_socket_mode_health_endpoint_listens_on_the_configured_host(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    checked: list[bool] = []

    class NoWebSocket:
        """Stands in for Bolt's handler: while "connected", the health endpoint must answer on the host."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def connect(self) -> None:
            _answers_only_on("127.0.0.2", port)
            checked.append(True)

        def close(self) -> None:
            pass

    monkeypatch.setattr(socket_mode, "SocketModeHandler", NoWebSocket)
    for rig in harness():
        settings = replace(rig.bot.settings, host="127.0.0.2", port=port, app_token=Secret(fake_secrets.APP_TOKEN))
        bot = SimpleNamespace(settings=settings, app=rig.bot.app, health=rig.bot.health, metrics=rig.bot.metrics)
        bot.draining = rig.bot.draining
        socket_mode.SocketModeConnection(bot).close()
    assert checked == [True]


def test_an_oversized_body_is_refused_before_it_is_sent(served: Served) -> None:
    """A Content-Length over the cap gets 413 at once: the body is never read, and no listener runs."""
    posts = len(served.rig.standin.posts)
    port = served.server.port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(
            b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            + f"Content-Length: {200 * 1024 * 1024}\r\n\r\n".encode()
        )
        answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")
    assert len(served.rig.standin.posts) == posts


def test_many_idle_connections_do_not_delay_a_signed_request(served: Served) -> None:
    """150 clients that connect and send half a request line hold no request thread: a signed command is acked."""
    port = served.server.port
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(150)]
    try:
        for connection in idle:
            connection.sendall(b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slack-")
        body, headers = served.rig.requests.command("ws-fin-014", response_url=served.rig.standin.response_url("r"))
        started = time.monotonic()
        response = served.client.post(served.url("/slack/events"), content=body, headers=headers)
        assert response.status_code == 200
        assert time.monotonic() - started < COMMAND_ACK_BUDGET
    finally:
        for connection in idle:
            connection.close()
    served.rig.wait_idle()


@pytest.fixture
def edge() -> Iterator[Served]:
    """The server as `python -m bot http` runs it: signatures checked on the raw bytes before Bolt parses them."""
    for rig in harness():
        verify = SignatureCheck(rig.bot.settings.request_secrets)
        server = HttpServer(wsgi_app(rig.bot.health, SlackRequestHandler(rig.bot.app), verify=verify), "127.0.0.1", 0)
        client = httpx.Client(timeout=10.0)
        try:
            yield Served(rig, server.start(), client)
        finally:
            client.close()
            close_server(server)


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
UNPARSABLE = {
    "json sent as a form": (b'{"type":"event_callback","response_url":"http://127.0.0.1:9/x"}', FORM),
    "a payload that is not JSON": (b"payload=%7Bnot-json&response_url=http%3A%2F%2F127.0.0.1%3A9%2Fx", FORM),
    "broken JSON": (b"{not json", {"Content-Type": "application/json"}),
    "JSON nested 100,000 deep": (b"[" * 100_000 + b"]" * 100_000, {"Content-Type": "application/json"}),
}


@pytest.mark.parametrize("case", list(UNPARSABLE))
@pytest.mark.parametrize("timestamp", ["malformed", "current"])
def test_an_unsigned_body_bolt_cannot_parse_gets_401_and_leaves_no_trace(
    edge: Served, caplog: pytest.LogCaptureFixture, case: str, timestamp: str
) -> None:
    body, headers = UNPARSABLE[case]
    timestamp = "abc" if timestamp == "malformed" else str(int(time.time()))
    signed = {**headers, "X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": "v0=" + "0" * 64}
    calls = len(edge.rig.standin.calls)
    with caplog.at_level(logging.DEBUG):
        response = edge.client.post(edge.events_url, content=body, headers=signed)
    assert response.status_code == 401
    assert len(edge.rig.standin.calls) == calls and edge.rig.standin.posts == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "not json" not in caplog.text and "not-json" not in caplog.text and "127.0.0.1:9" not in caplog.text


def test_a_signed_request_passes_the_edge_check_and_bolt_reads_the_same_body(edge: Served) -> None:
    body, headers = edge.rig.requests.command("ws-fin-014", response_url=edge.rig.standin.response_url("edge"))
    response = edge.client.post(edge.events_url, content=body, headers=headers)
    assert response.status_code == 200 and response.json()["text"] == "Looking up ws-fin-014…"
    [card] = edge.rig.standin.wait_for_posts(1)
    assert card.target == "edge"
    edge.rig.wait_idle()


def test_while_draining_a_command_is_told_to_ask_again_an_event_gets_503_and_nothing_starts() -> None:
    """After SIGTERM the process finishes what it acknowledged but starts nothing new: a slash command (which
    Slack does not retry) hears at once that the bot is restarting; an event gets 503, so Slack delivers it again
    later or to another process; a forged request is still refused first. `/healthz` stays 200 and says
    `draining`; `/readyz` turns 503, so a load balancer or readiness probe stops sending it work."""
    for rig in harness():
        slack, verify = SlackRequestHandler(rig.bot.app), SignatureCheck((SIGNING_SECRET,))
        application = wsgi_app(rig.bot.health, slack, verify=verify, draining=rig.bot.draining)
        server = HttpServer(application, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{server.port}/slack/events"
        base = f"http://127.0.0.1:{server.port}"
        try:
            assert httpx.get(f"{base}/readyz", timeout=5.0).status_code == 200
            assert httpx.get(f"{base}/healthz", timeout=5.0).json()["status"] == "ok"
            rig.bot.draining.set()
            requests = SlackRequests(SIGNING_SECRET)
            body, headers = requests.command("ws-fin-014", response_url=rig.standin.response_url("drain"))
            answer = httpx.post(url, content=body, headers=headers, timeout=5.0)
            assert (answer.status_code, answer.json()["text"]) == (200, server_module.RESTARTING)
            body, headers = requests.event(requests.mention("ws-fin-014"))
            assert httpx.post(url, content=body, headers=headers, timeout=5.0).status_code == 503
            forged = SlackRequests(fake_secrets.FOREIGN_SIGNING_SECRET)
            body, headers = forged.command("ws-fin-014", response_url=rig.standin.response_url("forged"))
            assert httpx.post(url, content=body, headers=headers, timeout=5.0).status_code == 401
            health = httpx.get(f"{base}/healthz", timeout=5.0)  # liveness: the process is fine, it is stopping
            assert (health.status_code, health.json()["status"]) == (200, "draining")
            ready = httpx.get(f"{base}/readyz", timeout=5.0)  # readiness: send it nothing new
            assert (ready.status_code, ready.json()) == (503, {"status": "draining"})
            assert rig.bot.pool.in_use == 0 and rig.standin.posts == []  # no work was started
        finally:
            close_server(server)
