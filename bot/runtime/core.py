"""The process's long-lived parts below Slack: state, the Defender client (or Graph mirror) and the alert service."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial

import httpx

from bot.alerts import freshness
from bot.alerts.mirror import GraphAlertSource
from bot.alerts.service import AlertService
from bot.alerts.source import AlertSource
from bot.config import Backend, ConfigError, DataApi, DefenderSettings, Settings
from bot.defender.auth import MsalTokenProvider, StaticTokenProvider, TokenKeeper, TokenProvider
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
from bot.state.factory import (
    StateBackend,
    StateOptions,
    open_state,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    budget: Budget
    client: AlertSource  # the Defender for Endpoint API, or the Graph alert mirror
    service: AlertService
    tenant: SimulatedTenant | None  # set when the built-in simulator stands in for Defender
    state: StateBackend
    tokens: TokenKeeper | None = None  # the real tenant's token, obtained at start-up and renewed ahead of expiry

    @property
    def link_tenant_id(self) -> str | None:
        """The tenant id portal links carry (`?tid=`), so they open in the right tenant."""
        return AAD_TENANT_ID if self.tenant is not None else self.settings.defender.tenant_id

    def close(self) -> None:
        if self.tokens is not None:
            self.tokens.stop()
        self.service.close()
        self.client.close()
        self.state.close()


def _token_provider(settings: DefenderSettings, scope: str) -> MsalTokenProvider:
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
    settings: Settings,
    *,
    tenant: SimulatedTenant | None = None,
    defender_url: str | None = None,
    warm_up: bool = False,
) -> Runtime:
    """Wire the process; with the simulator backend, `tenant` replaces the built-in data set.

    `defender_url` is a simulator served over HTTP by another process (tests of several bot processes): the
    client calls it with a static token instead of running the simulator in this process. `warm_up` (the
    serving processes) starts the Graph alert mirror's first sync in the background, so the first lookup does not
    wait for the backfill, and opens the connection to a real MDE API; tests leave it off so that the Defender
    calls they script are the ones they expect.
    """
    defender = settings.defender
    if defender_url is not None and defender.backend is not Backend.SIMULATOR:
        raise ValueError("defender_url stands in for the simulator: it needs DEFENDER_BACKEND=simulator")
    state = open_state(_state_options(settings))
    in_process = defender.backend is Backend.SIMULATOR and defender_url is None
    tenant = (tenant or SimulatedTenant()) if in_process else None
    simulated = tenant is not None or defender_url is not None
    scope = defender.graph_scope if defender.api is DataApi.GRAPH else defender.scope
    tokens = None if simulated else _token_provider(defender, scope)
    client = _alert_source(defender, state, tenant, defender_url, tokens or StaticTokenProvider("simulator"))
    log.info("alerts come from the %s", "Microsoft Graph security API" if defender.api is DataApi.GRAPH else "MDE API")
    warning = retirement_warning(defender.api, datetime.now(UTC).date())
    if warning:
        log.warning(warning)
    cache = settings.cache
    # The alert cache stretches its TTL as the hour's budget for the alert-list API runs low (bot.alerts.freshness).
    paced = Api.GRAPH_ALERTS if defender.api is DataApi.GRAPH else Api.MACHINE_ALERTS
    service = AlertService(
        client,
        ttl=cache.ttl,
        max_stale=cache.max_stale,
        maxsize=cache.maxsize,
        shared=state.cache,
        budget_share_left=partial(state.budget.hour_share_left, paced),
    )
    keeper = TokenKeeper(tokens) if tokens is not None else None
    if keeper is not None:
        keeper.start()  # the first lookup finds the token there
    if warm_up and isinstance(client, GraphAlertSource):
        client.warm_up()  # its first sync opens the connection to Graph as well
    elif warm_up and isinstance(client, DefenderClient) and not simulated:
        client.open_connection()  # a real tenant's TLS handshake, paid here rather than by the first lookup
    return Runtime(settings, state.budget, client, service, tenant, state, keeper)


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
    defender: DefenderSettings,
    state: StateBackend,
    tenant: SimulatedTenant | None,
    defender_url: str | None,
    tokens: TokenProvider,
) -> AlertSource:
    """The client for `DEFENDER_API`, against the simulator (in process or over HTTP) or the real tenant."""
    timeout = httpx.Timeout(defender.timeout, connect=5.0)
    transport = SimulatorTransport(tenant) if tenant is not None else None
    simulated = tenant is not None or defender_url is not None
    if defender.api is DataApi.GRAPH:
        graph = GraphClient(
            (defender_url or GRAPH_SIMULATOR_BASE_URL) if simulated else defender.graph_url,
            tokens,
            gate=state.budget,
            transport=transport,
            timeout=timeout,
        )
        return GraphAlertSource(graph, state.mirror(), backfill=defender.graph_backfill)
    return DefenderClient(
        (defender_url or SIMULATOR_BASE_URL) if simulated else defender.api_url,
        tokens,
        gate=state.budget,
        transport=transport,
        timeout=timeout,
    )


def _state_options(settings: Settings) -> StateOptions:
    # The shared cache keeps alert lists as long as they may still be shown: stale, or paced (bot.alerts.freshness).
    alerts_ttl = max(settings.cache.ttl, settings.cache.max_stale, freshness.LONGEST)
    return StateOptions(settings.state.url, settings.budget, settings.state.processes, alerts_ttl)
