"""Assembles one process's long-lived parts from `Settings`: budget, token provider, client, service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from bot.alerts.budget import Budget, RateBudget
from bot.alerts.service import AlertService
from bot.config import Backend, ConfigError, Settings
from bot.defender.auth import MsalTokenProvider, StaticTokenProvider, TokenProvider
from bot.defender.client import DefenderClient
from bot.defender.simulator import AAD_TENANT_ID, SIMULATOR_BASE_URL, SimulatedTenant, SimulatorTransport
from bot.shared.protocols import SharedCache
from bot.shared.urls import is_redis_url

if TYPE_CHECKING:
    from bot.shared.redis_state import SharedState


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    budget: Budget
    client: DefenderClient
    service: AlertService
    tenant: SimulatedTenant | None  # set when the built-in simulator stands in for Defender
    shared: SharedState | None = None  # the Redis connection when BOT_STATE_URL is redis://…

    @property
    def link_tenant_id(self) -> str | None:
        """The tenant id portal links carry (`?tid=`), so they open in the right tenant."""
        return AAD_TENANT_ID if self.tenant is not None else self.settings.tenant_id

    def close(self) -> None:
        self.client.close()
        if self.shared is not None:
            self.shared.close()


def _token_provider(settings: Settings) -> TokenProvider:
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
        scope=settings.scope,
        instance_discovery=settings.instance_discovery,
        timeout=settings.request_timeout,
    )


def build_runtime(settings: Settings, *, tenant: SimulatedTenant | None = None) -> Runtime:
    """Wire the process; with the simulator backend, `tenant` replaces the built-in data set."""
    shared, budget, cache = _shared_parts(settings)
    timeout = httpx.Timeout(settings.request_timeout, connect=5.0)
    if settings.backend is Backend.SIMULATOR and settings.simulator_url is not None:
        tenant = None  # served by another process over HTTP (tests of several bot processes)
        client = DefenderClient(settings.simulator_url, StaticTokenProvider("simulator"), gate=budget, timeout=timeout)
    elif settings.backend is Backend.SIMULATOR:
        tenant = tenant or SimulatedTenant()
        client = DefenderClient(
            SIMULATOR_BASE_URL,
            StaticTokenProvider("simulator"),
            gate=budget,
            transport=SimulatorTransport(tenant),
            timeout=timeout,
        )
    else:
        tenant = None
        client = DefenderClient(settings.api_url, _token_provider(settings), gate=budget, timeout=timeout)
    service = AlertService(
        client,
        ttl=settings.cache_ttl,
        max_stale=settings.cache_max_stale,
        maxsize=settings.cache_maxsize,
        shared=cache,
    )
    return Runtime(settings, budget, client, service, tenant, shared)


def _shared_parts(settings: Settings) -> tuple[SharedState | None, Budget, SharedCache | None]:
    """With `BOT_STATE_URL=redis://…`: the connection, the shared budget and cache; else in-process ones."""
    if not is_redis_url(settings.state_url):
        budget = RateBudget(
            settings.calls_per_minute,
            settings.calls_per_hour,
            background_minute_share=settings.background_minute_share,
            background_hour_share=settings.background_hour_share,
        )
        return None, budget, None
    from bot.shared.redis_budget import RedisRateBudget
    from bot.shared.redis_cache import RedisSharedCache
    from bot.shared.redis_state import SharedState

    shared = SharedState(settings.state_url)
    shared.ping()  # connects now; an unreachable server is logged and the process starts on local state
    shared_budget = RedisRateBudget(
        shared,
        settings.calls_per_minute,
        settings.calls_per_hour,
        background_minute_share=settings.background_minute_share,
        background_hour_share=settings.background_hour_share,
        processes=settings.processes,
    )
    cache = RedisSharedCache(shared, alerts_ttl=max(settings.cache_ttl, settings.cache_max_stale))
    return shared, shared_budget, cache
