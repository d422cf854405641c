"""Builds the Slack side of one process: Web API client, Bolt app, listeners, work pool, health status."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from slack_bolt import App
from slack_sdk import WebClient

from bot import metrics
from bot.access.policy import Installation
from bot.alerts.budget import Api
from bot.audit import AuditLog
from bot.config import SlackMode, SlackSettings
from bot.runtime import Runtime
from bot.shared import wiring as shared
from bot.slack.actions import ButtonSeal
from bot.slack.cards import CardContext
from bot.slack.gate import Gate
from bot.slack.listeners import Listeners
from bot.slack.outbox import Outbox, web_client
from bot.slack.replies import Replier
from bot.slack.usergroups import SlackMemberships
from bot.slack.watching import SlackWatches
from bot.slack.work import WorkPool
from bot.watch.poller import Poller
from bot.watch.store import WatchStore

log = logging.getLogger(__name__)


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

    def start_background(self) -> None:
        """Start the watch poller (in `http` and `socket` processes; the store's lease keeps it to one)."""
        self.poller.start()

    def health(self) -> dict[str, Any]:
        """A small status document for `GET /healthz`: no secrets, no alert data."""
        budget = {}
        for api in Api:
            usage = self.runtime.budget.usage(api)
            budget[api.value] = {"minute_left": usage.minute_left, "hour_left": usage.hour_left}
        return {
            "status": "ok",
            "defender_backend": self.runtime.settings.backend.value,
            "cached_devices": self.runtime.service.cached_devices,
            "budget": budget,
            "lookups": {"in_use": self.pool.in_use, "capacity": self.pool.capacity},
            "watches": {"live": shared.live_watch_count(self.store), "poll_interval_seconds": self.poller.interval},
            "shared_state": shared.shared_state_status(self.runtime),
        }

    def metrics(self) -> bytes:
        """`GET /metrics`: Prometheus text format."""
        return metrics.exposition(self.registry)

    def close(self) -> None:
        self.poller.stop()
        self.pool.shutdown(wait=False)
        self.store.close()
        self.runtime.close()
        self.audit.close()


def _installation(client: WebClient) -> Installation:
    """Where the bot is installed; `auth.test` also fails here, at start-up, for a bad bot token."""
    found = client.auth_test()
    return Installation(
        team_id=found.get("team_id") or None,
        enterprise_id=found.get("enterprise_id") or None,
        enterprise_install=bool(found.get("is_enterprise_install")),
    )


def build_slack_bot(runtime: Runtime, settings: SlackSettings) -> SlackBot:
    """Wire the Bolt app and the access gate; a bad bot token fails here, at start-up."""
    client = web_client(settings.bot_token.reveal(), settings.api_url)
    installation = _installation(client)
    http_mode = settings.mode is SlackMode.HTTP
    app = App(
        client=client,
        signing_secret=settings.signing_secret.reveal() if settings.signing_secret else "",
        request_verification_enabled=http_mode,  # Socket Mode requests arrive over an authenticated socket
        process_before_response=True,
        logger=logging.getLogger("slack_bolt"),
    )
    pool = WorkPool(settings.workers, settings.max_pending)
    # Buttons are sealed with a key from the signing secret (the app token in Socket Mode without one).
    seal = ButtonSeal.from_secret(settings.button_secret.reveal())

    def card_context() -> CardContext:
        return CardContext(
            runtime.settings.portal_url, runtime.link_tenant_id, max_alerts=settings.card_alerts, seal=seal
        )

    # Membership checks sit on the acknowledgement path: a short timeout and no retries.
    memberships = SlackMemberships(WebClient(token=settings.bot_token.reveal(), base_url=settings.api_url, timeout=2))
    limiter = shared.request_limiter(  # per process, or in Redis for every process
        runtime, user_per_minute=settings.user_rate_per_minute, channel_per_minute=settings.channel_rate_per_minute
    )
    gate = Gate(settings.access, installation, memberships, limiter)
    audit = AuditLog.open(settings.audit_log)
    outbox = Outbox(client)
    store = shared.watch_store(runtime)  # SQLite, or Redis with BOT_STATE_URL=redis://…
    watches = SlackWatches(
        store,
        runtime.service,
        outbox,
        card_context,
        access=lambda channel, user: gate.check(gate.on_behalf_of(channel, user)),
    )
    poller = Poller(
        store, runtime.service, runtime.client, watches, interval=runtime.settings.watch_poll_seconds,
        **shared.poller_options(runtime),
    )  # fmt: skip
    watches.poller = poller
    replier = Replier(runtime.service, card_context, backend=runtime.settings.backend.value)
    listeners = Listeners(replier, watches, pool, outbox, settings.visibility, gate, audit, seal)
    listeners.register(app, shared.event_deduper(runtime))
    state = metrics.State(
        budget=runtime.budget.usage,
        cached_devices=lambda: runtime.service.cached_devices,
        live_watches=lambda: shared.live_watch_count(store) or 0,  # 0 while Redis is away (/healthz says so)
        pending_followups=lambda: shared.pending_reply_count(store) or 0,
        lookups_in_use=lambda: pool.in_use,
    )
    return SlackBot(app, pool, runtime, settings, store, poller, seal, audit, metrics.bot_registry(state))
