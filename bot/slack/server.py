"""The HTTP side: a WSGI app for `/slack/events`, `/healthz` and `/metrics`, served by waitress.

waitress is a production WSGI server with a thread pool, pure Python, and can be started and stopped
inside a process, which the demo and the tests need. The bot's caches and rate budget live in the
process, so it runs as one process with many threads.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server
from waitress.wasyncore import close_all

from bot.config import SlackSettings
from bot.slack.bolt import SignatureCheck
from bot.telemetry.metrics import ACK_SECONDS, CONTENT_TYPE

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"  # liveness: 200 while the process serves, draining included
READY_PATH = "/readyz"  # readiness: 503 once the process is stopping, so a load balancer sends it nothing new
METRICS_PATH = "/metrics"


class Served(Protocol):
    """What the HTTP side serves: the Bolt app, the health document and the metrics (`bot.runtime.SlackBot`)."""

    @property
    def app(self) -> App: ...
    @property
    def settings(self) -> SlackSettings: ...
    @property
    def draining(self) -> threading.Event: ...
    def health(self) -> dict[str, Any]: ...
    def metrics(self) -> bytes: ...


# Slack's largest payloads (an event carrying a long message with blocks) stay well under 512 KiB; waitress
# answers 413 to a larger Content-Length without reading the body.
MAX_BODY_BYTES = 512 * 1024
MAX_HEADER_BYTES = 32 * 1024
IDLE_TIMEOUT = 30  # seconds a connection may send nothing (waitress's default is 120)
CONNECTION_LIMIT = 500  # headroom over slow or idle clients (waitress's default is 100); select() allows 1,024
REQUEST_THREADS = 16  # requests only parse and acknowledge; slow work runs on the bot's own pool
RESTARTING = "The bot is restarting. Run the command again in a minute."


def _json(start_response: StartResponse, status: str, document: dict[str, Any]) -> list[bytes]:
    body = json.dumps(document).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def wsgi_app(
    health: Callable[[], dict[str, Any]],
    slack: SlackRequestHandler | None,
    metrics: Callable[[], bytes] | None = None,
    *,
    verify: SignatureCheck | None = None,
    draining: threading.Event | None = None,
) -> WSGIApplication:
    """Routes Slack's POSTs to Bolt, `GET /healthz` to `health`, `GET /readyz` to whether the process takes new work,
    and `GET /metrics` to `metrics`; else 404.

    With `verify`, a POST's signature is checked on its raw bytes before Bolt parses anything: a request that
    fails gets 401 whatever its body holds (Bolt would answer 500 to a body it cannot parse).
    Once `draining` is set (the process is stopping) no Slack request starts work: see `_refuse_while_draining`.
    """

    def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path == HEALTH_PATH and method in ("GET", "HEAD"):
            return _json(start_response, "200 OK", health())
        if path == READY_PATH and method in ("GET", "HEAD"):
            if draining is not None and draining.is_set():
                return _json(start_response, "503 Service Unavailable", {"status": "draining"})
            return _json(start_response, "200 OK", {"status": "ready"})
        if path == METRICS_PATH and metrics is not None and method in ("GET", "HEAD"):
            body = metrics()
            start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))])
            return [body]
        if path == EVENTS_PATH and slack is not None:
            if method != "POST":
                return _json(start_response, "405 Method Not Allowed", {"error": "POST only"})
            if verify is not None and not _verified(environ, verify):
                return _json(start_response, "401 Unauthorized", {"error": "invalid request"})
            if draining is not None and draining.is_set():
                return _refuse_while_draining(environ, start_response)
            started = time.perf_counter()
            # Bolt answers only after the listener acknowledged, so this is the time Slack waits.
            response: Iterable[bytes] = slack(environ, start_response)
            ACK_SECONDS.observe(time.perf_counter() - started)
            return response
        return _json(start_response, "404 Not Found", {"error": "not found"})

    return application


def _refuse_while_draining(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    """An event gets 503, so Slack delivers it again (to another process, or after the restart); a command or a
    button press, which Slack does not retry, gets an honest note at once."""
    if str(environ.get("CONTENT_TYPE", "")).startswith("application/json"):
        return _json(start_response, "503 Service Unavailable", {"error": "restarting"})
    return _json(start_response, "200 OK", {"response_type": "ephemeral", "text": RESTARTING})


class ListenError(Exception):
    """The server cannot listen on its address (a busy port, an address not on this host): a start-up error."""


def _verified(environ: WSGIEnvironment, verify: SignatureCheck) -> bool:
    """Check the signature of the raw body (waitress has bounded its size), then hand Bolt the same bytes."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if length < 0:
        return False
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    timestamp = str(environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", ""))
    signature = str(environ.get("HTTP_X_SLACK_SIGNATURE", ""))
    if verify.verifies(body, timestamp, signature):
        return True
    log.info("refused a request that failed verification (%d bytes)", len(body))  # sizes, never content
    return False


class HttpServer:
    """A waitress server bound to `host:port` (port 0 picks a free one), run in the foreground or a thread."""

    def __init__(self, application: WSGIApplication, host: str, port: int) -> None:
        # Owning the socket map lets `close` end every connection, keep-alive ones included.
        self._map: dict[int, Any] = {}
        try:
            server = create_server(
                application,
                map=self._map,
                host=host,
                port=port,
                threads=REQUEST_THREADS,
                ident="device-alerts",
                # Anyone can reach /slack/events: bound what a request may cost before it is verified.
                max_request_body_size=MAX_BODY_BYTES,
                max_request_header_size=MAX_HEADER_BYTES,
                channel_timeout=IDLE_TIMEOUT,
                connection_limit=CONNECTION_LIMIT,
            )
        except OSError as exc:  # the port is taken, or the address is not this host's
            raise ListenError(f"cannot listen on {host} port {port} ({exc.strerror or exc})") from None
        if isinstance(server, MultiSocketServer):  # only when several listen addresses are given
            raise ValueError("listen on one address")
        self._server: BaseWSGIServer = server
        self._thread: threading.Thread | None = None
        self._closing = False

    @property
    def port(self) -> int:
        return int(self._server.getsockname()[1])

    def start(self) -> HttpServer:
        log.info("listening on %s port %d", self._server.getsockname()[0], self.port)
        self._thread = threading.Thread(target=self._run_until_closed, daemon=True, name="http-server")
        self._thread.start()
        return self

    def _run_until_closed(self) -> None:
        try:
            self._server.run()
        except OSError:
            if not self._closing:  # closing the sockets under the loop is how it is stopped
                raise

    def close(self) -> None:
        """Stop listening, drop open connections and stop the request threads."""
        self._closing = True
        self._server.task_dispatcher.shutdown()  # finish responses in flight, stop the request threads
        # Close the sockets on the loop's own thread: closing them under a waiting select() raises EBADF there.
        trigger: Any = self._server.trigger  # the type stubs declare it as an int
        trigger.pull_trigger(lambda: close_all(self._map))
        if self._thread is not None:
            self._thread.join(timeout=5)


def serve_http(bot: Served) -> HttpServer:
    """Serve Slack and the health endpoint on $BOT_HTTP_HOST:$PORT (0.0.0.0:3000 by default), in a thread.

    While `bot.draining` is set, Slack requests are refused (`_refuse_while_draining`), `/readyz` answers 503 and
    `/healthz` still answers 200 (`"status": "draining"`); the caller closes the server once the acknowledged work
    is done.
    """
    verify = SignatureCheck(bot.settings.request_secrets)
    slack = SlackRequestHandler(bot.app)
    application = wsgi_app(bot.health, slack, bot.metrics, verify=verify, draining=bot.draining)
    return HttpServer(application, bot.settings.host, bot.settings.http_port).start()
