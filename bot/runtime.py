"""The composition root: one process's long-lived parts built from settings.

`build_runtime` wires state, the Defender client and the alert service; `build_slack_bot` puts the Slack edge
(Bolt app, listeners, work pool, watches) on top. Nothing below this module chooses an implementation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from slack_bolt import App
from slack_sdk import WebClient

from bot.access.audit import AuditLog
from bot.alerts.mirror import GraphAlertSource
from bot.alerts.service import AlertService
from bot.alerts.source import AlertSource
from bot.config import Backend, ConfigError, DataApi, DefenderSettings, Settings, SlackSettings
from bot.defender.auth import MsalTokenProvider, StaticTokenProvider, TokenProvider
from bot.defender.client import DefenderClient
from bot.defender.graph import GraphClient
from bot.defender.limits import Api, Budget
from bot.defender.simulator import (
    AAD_TENANT_ID,
    GRAPH_SIMULATOR_BASE_URL,
    SIMULATOR_BASE_URL,
    SimulatedTenant,
    SimulatorTransport,
)
from bot.slack import bolt
from bot.slack.actions import ButtonSeal
from bot.slack.cards import CardContext
from bot.slack.gate import Gate
from bot.slack.listeners import Listeners
from bot.slack.poster import Poster, web_client
from bot.slack.recovery import AcceptedWork
from bot.slack.replies import Replier
from bot.slack.usergroups import SlackMemberships
from bot.slack.watching import SlackWatches
from bot.slack.work import WorkPool
from bot.state.factory import StateBackend, StateOptions, live_watch_count, open_state, pending_reply_count
from bot.state.watches import WatchStore
from bot.telemetry import metrics
from bot.watch.poller import Poller

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    budget: Budget
    client: AlertSource  # the Defender for Endpoint API, or the Graph alert mirror
    service: AlertService
    tenant: SimulatedTenant | None  # set when the built-in simulator stands in for Defender
    state: StateBackend

    @property
    def link_tenant_id(self) -> str | None:
        """The tenant id portal links carry (`?tid=`), so they open in the right tenant."""
        return AAD_TENANT_ID if self.tenant is not None else self.settings.defender.tenant_id

    def close(self) -> None:
        self.client.close()
        self.state.close()


def _token_provider(settings: DefenderSettings, scope: str) -> TokenProvider:
    credential: str | dict[str, str]
    if settings.certificate is not None:
        credential = settings.certificate.for_msal()
    elif settings.client_secret is not None:
        credential = settings.client_secret.reveal()
    else:
        raise ConfigError("DEFENDER_CLIENT_SECRET: the API backend needs a secret or a certificate")
    if settings.client_id is None:
        raise ConfigError("DEFENDER_CLIENT_ID: required for the API backend")
    return MsalTokenProvider(
        authority=settings.authority_url,
        client_id=settings.client_id,
        credential=credential,
        scope=scope,
        instance_discovery=settings.instance_discovery,
        timeout=settings.timeout,
    )


def build_runtime(
    settings: Settings, *, tenant: SimulatedTenant | None = None, defender_url: str | None = None
) -> Runtime:
    """Wire the process; with the simulator backend, `tenant` replaces the built-in data set.

    `defender_url` is a simulator served over HTTP by another process (tests of several bot processes): the
    client calls it with a static token instead of running the simulator in this process.
    """
    defender = settings.defender
    if defender_url is not None and defender.backend is not Backend.SIMULATOR:
        raise ValueError("defender_url stands in for the simulator: it needs DEFENDER_BACKEND=simulator")
    state = open_state(_state_options(settings))
    in_process = defender.backend is Backend.SIMULATOR and defender_url is None
    tenant = (tenant or SimulatedTenant()) if in_process else None
    client = _alert_source(defender, state, tenant, defender_url)
    log.info("alerts come from the %s", "Microsoft Graph security API" if defender.api is DataApi.GRAPH else "MDE API")
    warning = retirement_warning(defender.api, datetime.now(UTC).date())
    if warning:
        log.warning(warning)
    cache = settings.cache
    service = AlertService(client, ttl=cache.ttl, max_stale=cache.max_stale, maxsize=cache.maxsize, shared=state.cache)
    return Runtime(settings, state.budget, client, service, tenant, state)


MDE_RETIREMENT = date(2027, 2, 1)  # Microsoft's message-center post MC1220762
RETIREMENT_NOTICE_FROM = date(2027, 1, 1)


def retirement_warning(api: DataApi, today: date) -> str | None:
    """Said once at start-up by a bot still on the Defender for Endpoint API as its retirement nears."""
    if api is not DataApi.MDE or today < RETIREMENT_NOTICE_FROM:
        return None
    when = "stopped working on" if today >= MDE_RETIREMENT else "stops working on"
    return (
        f"The Defender for Endpoint API {when} {MDE_RETIREMENT:%d %b %Y}: set DEFENDER_API=graph and grant the app "
        "SecurityAlert.Read.All and ThreatHunting.Read.All on Microsoft Graph (README: Microsoft Graph)"
    )


def _alert_source(
    defender: DefenderSettings, state: StateBackend, tenant: SimulatedTenant | None, defender_url: str | None
) -> AlertSource:
    """The client for `DEFENDER_API`, against the simulator (in process or over HTTP) or the real tenant."""
    timeout = httpx.Timeout(defender.timeout, connect=5.0)
    transport = SimulatorTransport(tenant) if tenant is not None else None
    simulated = tenant is not None or defender_url is not None
    if defender.api is DataApi.GRAPH:
        graph = GraphClient(
            (defender_url or GRAPH_SIMULATOR_BASE_URL) if simulated else defender.graph_url,
            StaticTokenProvider("simulator") if simulated else _token_provider(defender, defender.graph_scope),
            gate=state.budget,
            transport=transport,
            timeout=timeout,
        )
        return GraphAlertSource(graph, state.mirror(), backfill=defender.graph_backfill)
    return DefenderClient(
        (defender_url or SIMULATOR_BASE_URL) if simulated else defender.api_url,
        StaticTokenProvider("simulator") if simulated else _token_provider(defender, defender.scope),
        gate=state.budget,
        transport=transport,
        timeout=timeout,
    )


def _state_options(settings: Settings) -> StateOptions:
    # The shared cache keeps alert lists as long as they may still be served stale.
    alerts_ttl = max(settings.cache.ttl, settings.cache.max_stale)
    return StateOptions(settings.state.url, settings.budget, settings.state.processes, alerts_ttl)


def budget_left(budget: Budget) -> Iterator[tuple[str, int, int]]:
    """(endpoint, calls left this minute, calls left this hour) for each Defender API."""
    for api in Api:
        usage = budget.usage(api)
        yield api.value, usage.minute_left, usage.hour_left


def health_problems(shared_state: str, watch_poll_failing: str | None) -> list[str]:
    """The dependencies `/healthz` reports down: `shared-state-unavailable` (Redis configured, not answering) and
    `watch-store-failing` (the last watch poll failed, e.g. an unwritable or full SQLite file)."""
    problems = []
    if shared_state == "redis-unavailable":
        problems.append("shared-state-unavailable")
    if watch_poll_failing is not None:
        problems.append("watch-store-failing")
    return problems


@dataclass(frozen=True, slots=True)
class SlackBot:
    app: App
    pool: WorkPool
    runtime: Runtime
    settings: SlackSettings
    store: WatchStore
    poller: Poller
    seal: ButtonSeal
    audit: AuditLog
    registry: CollectorRegistry
    listeners: Listeners
    accepted: AcceptedWork
    draining: threading.Event = field(default_factory=threading.Event)  # set on SIGTERM: no new work is taken

    def start_background(self) -> None:
        """Start the watch poller (in `http` and `socket` processes; the store's lease keeps it to one) and the
        recovery of acknowledged commands a stopped process left."""
        self.poller.start()
        self.accepted.start(self.listeners.answer_accepted)

    def health(self) -> dict[str, Any]:
        """A small status document for `GET /healthz`: no secrets, no alert data.

        Always HTTP 200 (a restart does not bring Redis or a disk back, and the bot still answers lookups): `status`
        is `degraded` when a configured dependency is down, and `problems` names each with a fixed word.
        """
        budget = {
            endpoint: {"minute_left": minute_left, "hour_left": hour_left}
            for endpoint, minute_left, hour_left in budget_left(self.runtime.budget)
        }
        shared_state = self.runtime.state.status()
        problems = health_problems(shared_state, self.poller.failing)
        return {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "defender_backend": self.runtime.settings.defender.backend.value,
            "defender_api": self.runtime.settings.defender.api.value,
            "cached_devices": self.runtime.service.cached_devices,
            "budget": budget,
            "lookups": {"in_use": self.pool.in_use, "capacity": self.pool.capacity},
            "watches": {"live": live_watch_count(self.store), "poll_interval_seconds": self.poller.interval},
            "shared_state": shared_state,
            **self._mirror_health(),
        }

    def _mirror_health(self) -> dict[str, Any]:
        """With `DEFENDER_API=graph`: how many alerts the mirror holds and when it last read Graph."""
        client = self.runtime.client
        if not isinstance(client, GraphAlertSource):
            return {}
        synced = client.store.synced_at()
        return {
            "graph_mirror": {
                "alerts": client.store.alert_count(),
                "synced_at": synced.isoformat(timespec="seconds") if synced else None,
            }
        }

    def metrics(self) -> bytes:
        """`GET /metrics`: Prometheus text format."""
        return metrics.exposition(self.registry)

    def close(self) -> None:
        self.poller.stop()
        self.accepted.stop()
        self.pool.shutdown(wait=False)
        self.accepted.close()
        self.store.close()
        self.runtime.close()
        self.audit.close()


def build_slack_bot(runtime: Runtime, settings: SlackSettings, *, poll_seconds: float | None = None) -> SlackBot:
    """Wire the Bolt app and the access gate; a bad bot token fails here, at start-up.

    `poll_seconds` overrides `WATCH_POLL_SECONDS` (tests: below its production minimum of 10 s).
    """
    installation = bolt.installation(settings)  # fails fast, in one line (`StartupError`)
    client = web_client(settings.bot_token.reveal(), settings.api_url)
    app = bolt.bolt_app(client, settings)
    pool = WorkPool(settings.workers, settings.max_pending)
    # Buttons are sealed with a key from the signing secret (the app token in Socket Mode without one); while
    # a rotation's previous secret is set, buttons sealed with it still open.
    seal = ButtonSeal.from_secret(settings.button_secret.reveal(), *settings.previous_button_secrets)
    if settings.previous_signing_secret is not None:
        log.warning(
            "SLACK_SIGNING_SECRET_PREVIOUS is set: requests and buttons signed with it are still accepted; "
            "remove it a week after the rotation (docs/operations.md)"
        )

    def card_context() -> CardContext:
        return CardContext(
            runtime.settings.defender.portal_url, runtime.link_tenant_id, max_alerts=settings.card_alerts, seal=seal
        )

    # Membership checks sit on the acknowledgement path: a short timeout and no retries.
    memberships = SlackMemberships(WebClient(token=settings.bot_token.reveal(), base_url=settings.api_url, timeout=2))
    limiter = runtime.state.request_limiter(  # per process, or in Redis for every process
        user_per_minute=settings.access.user_rate_per_minute, channel_per_minute=settings.access.channel_rate_per_minute
    )
    gate = Gate(settings.access.policy, installation, memberships, limiter)
    audit = AuditLog.open(settings.access.audit_log)
    poster = Poster(client)
    store = runtime.state.watch_store()  # SQLite, or Redis with BOT_STATE_URL=redis://…
    watches = SlackWatches(
        store,
        runtime.service,
        poster,
        card_context,
        access=lambda channel, user: gate.check(gate.on_behalf_of(channel, user)),
    )
    interval = runtime.settings.watch.poll_seconds if poll_seconds is None else poll_seconds
    lease_ttl = runtime.state.lease_ttl(interval)
    poller = Poller(store, runtime.service, runtime.client, watches, interval=interval, lease_ttl=lease_ttl)
    watches.poller = poller
    replier = Replier(runtime.service, card_context, backend=runtime.settings.defender.backend.value)
    accepted = AcceptedWork(runtime.state.work_store(), takeover=settings.takeover_seconds)
    listeners = Listeners(replier, watches, pool, poster, settings.visibility, gate, audit, seal, accepted)
    listeners.register(app, runtime.state.event_deduper())
    state = metrics.State(
        budget_left=lambda: budget_left(runtime.budget),
        cached_devices=lambda: runtime.service.cached_devices,
        live_watches=lambda: live_watch_count(store) or 0,  # 0 while Redis is away (/healthz says so)
        pending_followups=lambda: pending_reply_count(store) or 0,
        lookups_in_use=lambda: pool.in_use,
    )
    registry = metrics.bot_registry(state)
    return SlackBot(app, pool, runtime, settings, store, poller, seal, audit, registry, listeners, accepted)
