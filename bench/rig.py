"""What the HTTP benchmarks share: the two apps in their own processes, Slack's side, signed load, percentiles.

Each app under test runs in a child process (`python -m bench.rig ours|baseline …`), served by the bot's
waitress server (`bot.slack.server.HttpServer`, 16 request threads) on 127.0.0.1, with its own Defender double
(`SimulatedTenant` with a latency, in the child, through `SimulatorTransport`). The benchmark process plays
Slack: it runs the `SlackStandIn` (Web API and `response_url`s, here stamping when each message arrives) and
sends signed requests (`SlackRequests`) on an open-loop schedule. A child reports what its Defender double
served on `GET /healthz`. Keeping the load generator out of the app's process keeps its work off the app's GIL.

- "ours" is the real bot: `build_runtime` + `build_slack_bot` + `wsgi_app`, as `python -m bot http` wires it
  (the watch poller runs too), with `BOT_STATE_URL=sqlite:///:memory:`, `BOT_AUDIT_LOG=off` and the per-person
  and per-channel rate limits off (`BOT_USER_RATE_PER_MINUTE=0`, `BOT_CHANNEL_RATE_PER_MINUTE=0`), so every
  command reaches a lookup; `--env KEY=VALUE` changes any setting.
- "baseline" is `bench.baseline.app`: a plain Bolt app with default settings.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import math
import os
import platform
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from bot.defender.simulator import Json, SimulatedTenant
from bot.demo.slack_requests import SlackRequests
from bot.demo.standin import Posted, SlackStandIn

ROOT = Path(__file__).resolve().parent.parent
SIGNING_SECRET = "bench-signing-secret-5d1c"  # noqa: S105 - a local test double's secret
DEFAULT_LATENCY = 0.3  # seconds per Defender request
ACK_DEADLINE = 3.0  # Slack's acknowledgement deadline
APPS = ("ours", "baseline")
OURS_ENV = {
    "BOT_STATE_URL": "sqlite:///:memory:",
    "BOT_AUDIT_LOG": "off",
    "BOT_USER_RATE_PER_MINUTE": "0",
    "BOT_CHANNEL_RATE_PER_MINUTE": "0",
}
STARTUP_TIMEOUT = 30.0


# -- the Defender double's devices -------------------------------------------------------------------------------


def device_id(n: int) -> str:
    """The machine id of the n-th device `add_devices` appends (40 hex digits, like Defender's)."""
    return hashlib.sha1(f"bench-device-{n}".encode(), usedforsecurity=False).hexdigest()


def device_name(n: int) -> str:
    """The hostname of the n-th device `add_devices` appends."""
    return f"bench-{n:04d}.contoso.local"


def add_devices(tenant: SimulatedTenant, count: int, *, alerts_each: int = 0) -> list[str]:
    """Append `count` devices (copies of the first record under new ids and names) and return their ids.

    Each new device gets copies of the first `alerts_each` alerts of the template device (cycled when it has
    fewer), so every device costs Defender the same work.
    """
    template = tenant.machines[0]
    template_alerts = [alert for alert in tenant.alerts if alert.get("machineId") == template["id"]]
    ids = []
    for n in range(count):
        machine_id = device_id(n)
        name = device_name(n)
        tenant.machines.append({**template, "id": machine_id, "computerDnsName": name})
        for k in range(alerts_each if template_alerts else 0):
            alert = template_alerts[k % len(template_alerts)]
            copy: Json = {**alert, "id": f"da{n:08d}{k:04d}_bench", "machineId": machine_id, "computerDnsName": name}
            tenant.alerts.append(copy)
        ids.append(machine_id)
    return ids


class CountingTenant(SimulatedTenant):
    """The simulator, also recording when each request was answered and with which status."""

    def __init__(self, **kwargs: Any) -> None:
        self.served: list[tuple[float, str, int]] = []  # (monotonic time, path, status)
        self._served_lock = threading.Lock()
        super().__init__(**kwargs)

    def serve(self, request: httpx.Request) -> httpx.Response:
        response = super().serve(request)
        with self._served_lock:
            self.served.append((time.monotonic(), request.url.path, response.status_code))
        return response


@dataclass(frozen=True, slots=True)
class DefenderCalls:
    """What a Defender double served, by API (Defender for Endpoint's, and Microsoft Graph's for DEFENDER_API=graph)."""

    alerts: int  # GET /api/machines/{id}/alerts
    details: int  # GET /api/machines/{id}
    other: int  # any other Defender for Endpoint request
    throttled: int  # answered 429
    alert_times: tuple[float, ...] = ()
    graph_alerts: int = 0  # GET /v1.0/security/alerts_v2 (each page is a call)
    hunting: int = 0  # POST /v1.0/security/runHuntingQuery

    @property
    def total(self) -> int:
        return self.alerts + self.details + self.other + self.graph_alerts + self.hunting

    @property
    def graph(self) -> int:
        return self.graph_alerts + self.hunting

    @classmethod
    def from_log(cls, served: Iterable[Sequence[Any]]) -> DefenderCalls:
        alerts, details, other, throttled, graph_alerts, hunting, times = 0, 0, 0, 0, 0, 0, []
        for moment, path, status in served:
            parts = str(path).strip("/").split("/")
            if parts[:2] == ["api", "machines"] and len(parts) == 4 and parts[3] == "alerts":
                alerts += 1
                times.append(float(moment))
            elif parts[:2] == ["api", "machines"] and len(parts) == 3:
                details += 1
            elif parts[:3] == ["v1.0", "security", "alerts_v2"]:
                graph_alerts += 1
            elif parts[:3] == ["v1.0", "security", "runHuntingQuery"]:
                hunting += 1
            else:
                other += 1
            throttled += int(status) == 429
        return cls(alerts, details, other, throttled, tuple(times), graph_alerts=graph_alerts, hunting=hunting)


# -- Slack's side --------------------------------------------------------------------------------------------------


class TimedStandIn(SlackStandIn):
    """The Slack stand-in, also stamping (monotonic clock) when the first message reached each target."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.first: dict[str, dict[str, Any]] = {}  # the first message's payload, by target
        super().__init__()

    def _record(self, posted: Posted) -> None:
        self.arrivals.setdefault(posted.target, time.monotonic())
        self.first.setdefault(posted.target, posted.payload)
        super()._record(posted)

    def card_seconds(self, sent: Iterable[Sent]) -> tuple[list[float], int]:
        """Seconds from each command to its device card, and how many other answers (errors) arrived."""
        cards, others = [], 0
        for item in sent:
            name = item.planned.name
            if name not in self.arrivals:
                continue
            if is_device_card(self.first[name]):
                cards.append(self.arrivals[name] - item.sent_at)
            else:
                others += 1
        return cards, others

    def wait_for(self, names: Iterable[str], timeout: float) -> int:
        """Wait until a message reached every one of `names` (or the timeout); return how many did."""
        wanted = set(names)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not wanted <= self.arrivals.keys():
            time.sleep(0.02)
        return len(wanted & self.arrivals.keys())

    def close_soon(self) -> None:
        """Close without waiting out the server's 0.5 s shutdown poll."""
        threading.Thread(target=self.close, daemon=True, name="standin-close").start()


def is_device_card(payload: dict[str, Any]) -> bool:
    """A device card from either app, not an error: ours starts with a header block, the baseline's card with
    the device in bold (its errors start with words)."""
    blocks = payload.get("blocks") or []
    if blocks:
        return bool(blocks[0].get("type") == "header")
    return str(payload.get("text", "")).startswith("*")


@dataclass(frozen=True, slots=True)
class Planned:
    """One slash command to send `at` seconds after the start; its card goes to the response_url `name`."""

    at: float
    text: str
    name: str
    user: str = "U0ALICE"
    channel: str = "C0INCIDENT"


@dataclass(frozen=True, slots=True)
class Sent:
    planned: Planned
    sent_at: float  # monotonic
    latency: float  # seconds to the HTTP answer (inf: none)
    status: int  # 0: no answer
    ack_text: str

    @property
    def acked_in_time(self) -> bool:
        return self.status == 200 and self.latency <= ACK_DEADLINE

    @property
    def busy(self) -> bool:
        return "busy" in self.ack_text.lower()


def _ack_text(response: httpx.Response) -> str:
    try:
        document = response.json()
    except ValueError:
        return response.text
    return str(document.get("text", "")) if isinstance(document, dict) else response.text


async def _send_all(url: str, requests: list[tuple[Planned, bytes, dict[str, str]]], timeout: float) -> list[Sent]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.2  # room to create every task before the first is due

        async def send(planned: Planned, body: bytes, headers: dict[str, str]) -> Sent:
            await asyncio.sleep(max(0.0, start + planned.at - loop.time()))
            began = time.monotonic()
            try:
                response = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError:
                return Sent(planned, began, math.inf, 0, "")
            return Sent(planned, began, time.monotonic() - began, response.status_code, _ack_text(response))

        return list(await asyncio.gather(*(send(*item) for item in requests)))


async def _first_request(url: str) -> None:
    """One request down the path `send_commands` takes, before anything is timed: the first request of this
    process pays for lazy set-up in asyncio and httpx (20-40 ms), which would land on whichever app ran first."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        await client.get(url)


def send_commands(app: AppProcess, standin: SlackStandIn, plan: Sequence[Planned], timeout: float = 60.0) -> list[Sent]:
    """Sign every command first, then send each on schedule (open loop: a slow answer delays no other send)."""
    signer = SlackRequests(SIGNING_SECRET)
    requests = []
    for planned in plan:
        body, headers = signer.command(
            planned.text, response_url=standin.response_url(planned.name), user_id=planned.user,
            channel_id=planned.channel,
        )  # fmt: skip
        requests.append((planned, body, headers))
    return asyncio.run(_send_all(app.events_url, requests, timeout))


# -- the apps, each in its own process ---------------------------------------------------------------------------


class AppProcess:
    """One app under test in a child process; closing its stdin ends it."""

    def __init__(
        self,
        kind: str,
        standin: SlackStandIn,
        *,
        latency: float = DEFAULT_LATENCY,
        devices: int = 0,
        alerts_each: int = 8,
        env: dict[str, str] | None = None,
    ) -> None:
        if kind not in APPS:
            raise ValueError(kind)
        self.kind = kind
        command = [
            sys.executable, "-m", "bench.rig", kind, "--slack-api-url", standin.api_url, "--bot-token",
            standin.bot_token, "--latency", str(latency), "--devices", str(devices), "--alerts-each", str(alerts_each),
            *(f"--env={key}={value}" for key, value in (env or {}).items()),
        ]  # fmt: skip
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log
        )
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], STARTUP_TIMEOUT)
        line = self._process.stdout.readline() if ready else b""
        if not line:
            output = self.log()
            self.close()
            raise RuntimeError(f"the {kind} app did not start:\n{output}")
        self.port = int(json.loads(line)["port"])
        self._http = httpx.Client(timeout=10.0)
        asyncio.run(_first_request(f"http://127.0.0.1:{self.port}/healthz"))

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def status(self) -> dict[str, Any]:
        """The child's `/healthz`: the bot's own health document (ours) and what its Defender double served."""
        document: dict[str, Any] = self._http.get(f"http://127.0.0.1:{self.port}/healthz").json()
        return document

    def defender(self) -> DefenderCalls:
        return DefenderCalls.from_log(self.status()["defender"])

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def close(self) -> None:
        if hasattr(self, "_http"):
            self._http.close()
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._log.close()

    def __enter__(self) -> AppProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """`--latency` of the Defender double and `--env KEY=VALUE` settings for the real bot."""
    parser.add_argument("--latency", type=float, default=DEFAULT_LATENCY, help="seconds per Defender request")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE setting for the real bot")


def bot_env(args: argparse.Namespace) -> dict[str, str]:
    return dict(item.split("=", 1) for item in args.env)


def _serve(argv: Sequence[str] | None = None) -> None:
    """The child: build one app on a Defender double, serve it on a free port, print the port, wait for EOF."""
    parser = argparse.ArgumentParser(prog="python -m bench.rig")
    parser.add_argument("kind", choices=APPS)
    parser.add_argument("--slack-api-url", required=True)
    parser.add_argument("--bot-token", required=True)
    parser.add_argument("--devices", type=int, default=0)
    parser.add_argument("--alerts-each", type=int, default=8)
    add_load_options(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from slack_bolt.adapter.wsgi import SlackRequestHandler

    from bench.baseline.app import build_baseline
    from bot.config import SlackMode, load_settings, load_slack_settings
    from bot.runtime import build_runtime, build_slack_bot
    from bot.slack.server import HttpServer, wsgi_app

    tenant = CountingTenant(latency=args.latency)
    add_devices(tenant, args.devices, alerts_each=args.alerts_each)
    env = {**OURS_ENV, **bot_env(args)}
    slack_env = {"SLACK_BOT_TOKEN": args.bot_token, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                 "SLACK_API_URL": args.slack_api_url, **env}  # fmt: skip
    bot_health: Any = None
    if args.kind == "ours":
        runtime = build_runtime(load_settings(env), tenant=tenant, warm_up=True)  # as `python -m bot http`
        bot = build_slack_bot(runtime, load_slack_settings(SlackMode.HTTP, slack_env))
        bot.start_background()
        app, bot_health = bot.app, bot.health
    else:
        app = build_baseline(
            tenant, bot_token=args.bot_token, signing_secret=SIGNING_SECRET, slack_api_url=args.slack_api_url
        )

    def health() -> dict[str, Any]:
        with tenant._served_lock:
            served = list(tenant.served)
        return {"app": args.kind, "defender": served, "bot": bot_health() if bot_health else None}

    server = HttpServer(wsgi_app(health, SlackRequestHandler(app)), "127.0.0.1", 0).start()
    print(json.dumps({"port": server.port}), flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    sys.stderr.flush()
    os._exit(0)  # no orderly teardown needed: nothing here outlives the process


# -- figures --------------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0-100) of `values`; nan for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    if math.isinf(seconds):
        return "no answer"
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def ratio(baseline: float, ours: float) -> str:
    """The baseline's figure over ours ('×12.0'): how many times more the baseline takes or makes."""
    if math.isnan(baseline) or math.isnan(ours):
        return "-"
    if ours == 0 or math.isinf(baseline):
        return "-" if baseline == 0 else "∞"
    return f"×{baseline / ours:,.1f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table (pastes straight into docs/benchmarks.md)."""
    cells = [[str(h) for h in headers], *[[f"{c:,}" if isinstance(c, int) else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine() -> str:
    return f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}, Python {platform.python_version()}"


@dataclass
class Timer:
    started: float = field(default_factory=time.perf_counter)

    def __str__(self) -> str:
        return f"{time.perf_counter() - self.started:.1f} s"


if __name__ == "__main__":
    _serve()
