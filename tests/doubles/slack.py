"""Shared pieces for the Slack tests: a bot wired to a `SlackStandIn` and the built-in simulator.

Everything runs in-process on 127.0.0.1: the stand-in plays Slack's Web API and response_url endpoints,
`SimulatedTenant` plays Defender, and `SlackRequests` signs what Slack would send. `api` picks which of its APIs
the bot reads (`DEFENDER_API`: `mde`, or `graph` for Microsoft Graph's alert mirror and advanced hunting).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_bolt import BoltResponse
from slack_bolt.request import BoltRequest

from bot.alerts.mirror import GraphAlertSource
from bot.alerts.service import AlertService
from bot.alerts.source import AlertSource
from bot.config import DataApi, SlackMode, load_settings, load_slack_settings
from bot.defender.simulator import SimulatedTenant
from bot.demo.slack_requests import SlackRequests
from bot.demo.standin import Posted, SlackStandIn
from bot.runtime import Runtime, SlackBot, build_runtime, build_slack_bot
from bot.slack.server import HttpServer
from tests.doubles import secrets as fake_secrets
from tests.doubles.defender import graph_source, kind_of

SIGNING_SECRET = fake_secrets.SIGNING_SECRET
# Every bot a test builds keeps its watches in memory: nothing is written into the working directory.
MEMORY_STATE_URL = "sqlite:///:memory:"
COMMAND_ACK_BUDGET = 3.0  # Slack's acknowledgement deadline, in seconds
# Strings that would notify people if they reached Slack unescaped.
PINGS = ("<!channel>", "<!here>", "<!everyone>", "<@U", "<!subteam")
# The only `<…>` tokens a card may contain: links this code built and date tokens.
_TOKEN = re.compile(r"<([^<>]*)>")
_OWN_TOKEN = re.compile(r"(https://security\.microsoft\.com/[^|<>\s]+(\|[^<>]*)?|!date\^\d+\^[^|<>]+\|[^<>]+)")

Request = tuple[bytes, dict[str, str]]


def close_soon(standin: SlackStandIn) -> None:
    """Close a stand-in without waiting out its server's 0.5 s shutdown poll on the test's time."""
    threading.Thread(target=standin.close, daemon=True, name="standin-close").start()


def slack_env(standin: SlackStandIn, **extra: str) -> dict[str, str]:
    """The Slack variables for an HTTP-mode bot that talks to `standin`."""
    return {
        "SLACK_BOT_TOKEN": standin.bot_token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": standin.api_url,
        **extra,
    }


def make_bot(
    standin: SlackStandIn,
    *,
    env: Mapping[str, str] | None = None,
    tenant: SimulatedTenant | None = None,
    clock: Callable[[], float] | None = None,
    state_url: str = MEMORY_STATE_URL,
    settings_env: Mapping[str, str] | None = None,
    api: str = "mde",
) -> SlackBot:
    """A bot on the simulator backend; `clock` gives the alert service a manual clock (cache ages, refresh).

    `state_url` is where its watches live: in memory unless a test needs a file (`sqlite:///{tmp_path}/…`).
    `env` adds Slack settings (`load_slack_settings`), `settings_env` the others (`load_settings`); `api` is
    `DEFENDER_API`. With Graph and a `clock`, the alert mirror's syncs age with that clock too.
    """
    settings = load_settings({"BOT_STATE_URL": state_url, "DEFENDER_API": api, **(settings_env or {})})
    runtime = build_runtime(settings, tenant=tenant or SimulatedTenant())
    if clock is not None:
        client: AlertSource = runtime.client
        if isinstance(client, GraphAlertSource) and runtime.tenant is not None:
            client.close()
            client = graph_source(runtime.tenant, gate=runtime.budget, now=_following(clock))
        runtime = with_alert_source(runtime, client, clock)
    slack = load_slack_settings(SlackMode.HTTP, {**slack_env(standin), **(env or {})})
    return build_slack_bot(runtime, slack)


def with_alert_source(runtime: Runtime, client: AlertSource, clock: Callable[[], float]) -> Runtime:
    """`runtime` with another alert source, and an alert service on `clock` with the configured cache settings."""
    cache = runtime.settings.cache
    service = AlertService(client, ttl=cache.ttl, max_stale=cache.max_stale, maxsize=cache.maxsize, clock=clock)
    return dataclasses.replace(runtime, client=client, service=service)


def _following(clock: Callable[[], float]) -> Callable[[], datetime]:
    """Wall time that moves in real time and with `clock` (the simulator's alerts carry real times)."""
    start = clock()
    return lambda: datetime.now(UTC) + timedelta(seconds=clock() - start)


@dataclass
class Harness:
    """One bot, its stand-in Slack and its simulated tenant, driven through `App.dispatch`."""

    standin: SlackStandIn
    bot: SlackBot
    requests: SlackRequests

    @property
    def api(self) -> str:
        """`DEFENDER_API` of this bot: `mde` or `graph`."""
        return self.bot.runtime.settings.defender.api.value

    @property
    def graph(self) -> bool:
        return self.bot.runtime.settings.defender.api is DataApi.GRAPH

    @property
    def tenant(self) -> SimulatedTenant:
        tenant = self.bot.runtime.tenant
        assert tenant is not None
        return tenant

    def dispatch(self, request: Request) -> BoltResponse:
        body, headers = request
        return self.bot.app.dispatch(BoltRequest(body=body.decode(), headers=headers))

    def command(self, text: str, url_name: str = "r1") -> BoltResponse:
        return self.dispatch(self.requests.command(text, response_url=self.standin.response_url(url_name)))

    def event(self, event: dict[str, Any], **kwargs: Any) -> BoltResponse:
        return self.dispatch(self.requests.event(event, **kwargs))

    def press(self, action_id: str, value: str, url_name: str = "b1") -> BoltResponse:
        return self.dispatch(
            self.requests.block_action(
                action_id, value, response_url=self.standin.response_url(url_name, for_action=True)
            )
        )

    def choose(self, action_id: str, option_value: str, url_name: str = "b1", **where: Any) -> BoltResponse:
        """Pick an option of an overflow menu (a card's per-alert triage menu)."""
        url = self.standin.response_url(url_name)
        return self.dispatch(self.requests.overflow_action(action_id, option_value, response_url=url, **where))

    def submit(self, view: dict[str, Any], values: dict[str, Any], **who: Any) -> BoltResponse:
        """Submit a modal the bot opened, with the inputs' state as Slack sends it."""
        return self.dispatch(self.requests.view_submission(view, values, **who))

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until the work pool has no job running or waiting."""
        deadline = time.monotonic() + timeout
        while self.bot.pool.in_use:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.bot.pool.in_use} jobs still running")
            time.sleep(0.01)

    def alerts_requests(self) -> list[str]:
        """Paths of the alert-list requests the simulator served: a device's alerts (MDE), alerts_v2 (Graph)."""
        kinds = ("graph-alerts",) if self.graph else ("machine-alerts", "alerts")
        return [path for _, path in self.tenant.request_log if kind_of(path) in kinds]

    def hunting_requests(self) -> int:
        """Advanced hunting queries the simulator served (Graph's device lookups)."""
        return sum(kind_of(path) == "graph-hunting" for _, path in self.tenant.request_log)

    def close(self) -> None:
        with contextlib.suppress(TimeoutError):
            self.wait_idle(timeout=5.0)
        self.bot.close()
        close_soon(self.standin)


def harness(*, usergroups: Mapping[str, set[str]] | None = None, **options: Any) -> Iterator[Harness]:
    """Generator for fixtures: yields a ready `Harness` (`make_bot`'s options) and tears it down afterwards.

    `usergroups` exist in Slack before the bot starts (the bot reads them at start-up, as in production)."""
    standin = SlackStandIn()
    standin.usergroups.update({group: set(members) for group, members in (usergroups or {}).items()})
    try:
        bot = make_bot(standin, **options)
    except BaseException:
        close_soon(standin)
        raise
    rig = Harness(standin, bot, SlackRequests(SIGNING_SECRET, on_trigger=standin.issue_trigger))
    try:
        yield rig
    finally:
        rig.close()


def ack_json(response: BoltResponse) -> dict[str, Any]:
    assert response.status == 200, (response.status, response.body)
    document: dict[str, Any] = json.loads(response.body)
    return document


def all_text(payload: Mapping[str, Any]) -> str:
    """The fallback text and every text inside the blocks, joined: what a person can read."""
    texts = [str(payload.get("text", ""))]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    texts.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(payload.get("blocks", []))
    return "\n".join(texts)


def header(posted: Posted) -> str:
    blocks = posted.payload.get("blocks") or []
    assert blocks and blocks[0]["type"] == "header", posted.payload
    return str(blocks[0]["text"]["text"])


def buttons(posted: Posted) -> dict[str, dict[str, Any]]:
    """A card's buttons by action_id."""
    found: dict[str, dict[str, Any]] = {}
    for block in posted.payload.get("blocks") or []:
        if block["type"] == "actions":
            found.update({element["action_id"]: element for element in block["elements"]})
    return found


def alert_controls(posted: Posted) -> list[dict[str, Any]]:
    """The per-alert controls (Details buttons or triage menus) of a card, in the card's order."""
    return [b["accessory"] for b in posted.payload.get("blocks") or [] if b["type"] == "section" and "accessory" in b]


def foreign_tokens(payload: Mapping[str, Any]) -> list[str]:
    """`<…>` tokens in a message that this code did not build (each one could ping, link or spoof)."""
    return [m[0] for m in _TOKEN.finditer(all_text(payload)) if not _OWN_TOKEN.fullmatch(m[1])]


def close_server(server: HttpServer) -> None:
    """Close a server started with `HttpServer.start()`, and the waitress threads its `close()` leaves behind.

    `HttpServer.close()` can race its own serving loop (`OSError: [Errno 9]` in the "http-server" thread) and
    never stops waitress's task threads; both are reported as bugs (see test_slack_server). Only that one
    exception is kept out of the test report, everything else still reaches pytest.
    """
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        known = isinstance(args.exc_value, OSError) and args.exc_value.errno == errno.EBADF
        if not (known and args.thread is not None and args.thread.name == "http-server"):
            previous(args)

    threading.excepthook = hook
    try:
        server.close()
    finally:
        threading.excepthook = previous
    shutdown_task_threads(server)


def shutdown_task_threads(server: HttpServer) -> None:
    server._server.task_dispatcher.shutdown(timeout=2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


def assert_inert(payload: dict[str, Any], *, allowed_mentions: tuple[str, ...] = ()) -> None:
    """Nothing in a message the bot sends can notify anyone (but `allowed_mentions`) or disguise a link."""
    view = mrkdwn_view(payload)
    tokens = [t for t in foreign_tokens(view) if t not in allowed_mentions]
    assert tokens == [], tokens
    raw = json.dumps(view, ensure_ascii=False)
    for mention in allowed_mentions:
        raw = raw.replace(mention, "")
    assert not [ping for ping in PINGS if ping in raw], raw[:500]


def reference(posted: Posted) -> str | None:
    """The follow-up reference of a reply in a watch's thread (root cards carry one too, but are not replies)."""
    if not posted.payload.get("thread_ts"):
        return None
    metadata = posted.payload.get("metadata") or {}
    payload = metadata.get("event_payload") or {}
    value = payload.get("reference")
    return str(value) if value is not None else None


def text_of(posted: Posted) -> str:
    return json.dumps(posted.payload.get("blocks") or [], ensure_ascii=False) + str(posted.payload.get("text", ""))
