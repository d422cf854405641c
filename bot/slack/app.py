"""Builds the Slack side of one process: Web API client, Bolt app, listeners, work pool, health status."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_bolt import App

from bot.alerts.budget import Api
from bot.config import SlackMode, SlackSettings
from bot.runtime import Runtime
from bot.slack.cards import CardContext
from bot.slack.listeners import EventDeduper, Listeners
from bot.slack.outbox import Outbox, web_client
from bot.slack.replies import Replier
from bot.slack.watching import SlackWatches
from bot.slack.work import WorkPool
from bot.watch.poller import Poller
from bot.watch.store import SqliteWatchStore, WatchStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SlackBot:
    app: App
    pool: WorkPool
    runtime: Runtime
    settings: SlackSettings
    store: WatchStore
    poller: Poller

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
            "watches": {"live": len(self.store.live_watches()), "poll_interval_seconds": self.poller.interval},
        }

    def close(self) -> None:
        self.poller.stop()
        self.pool.shutdown(wait=False)
        self.store.close()
        self.runtime.close()


def build_slack_bot(runtime: Runtime, settings: SlackSettings) -> SlackBot:
    """Wire the Bolt app; constructing it calls `auth.test`, so a bad bot token fails here, at start-up."""
    client = web_client(settings.bot_token.reveal(), settings.api_url)
    http_mode = settings.mode is SlackMode.HTTP
    app = App(
        client=client,
        signing_secret=settings.signing_secret.reveal() if settings.signing_secret else "",
        request_verification_enabled=http_mode,  # Socket Mode requests arrive over an authenticated socket
        process_before_response=True,
        logger=logging.getLogger("slack_bolt"),
    )
    pool = WorkPool(settings.workers, settings.max_pending)

    def card_context() -> CardContext:
        return CardContext(runtime.settings.portal_url, runtime.link_tenant_id, max_alerts=settings.card_alerts)

    outbox = Outbox(client)
    store = SqliteWatchStore.from_url(runtime.settings.state_url)
    watches = SlackWatches(store, runtime.service, outbox, card_context)
    poller = Poller(store, runtime.service, runtime.client, watches, interval=runtime.settings.watch_poll_seconds)
    watches.poller = poller
    replier = Replier(runtime.service, card_context, backend=runtime.settings.backend.value)
    Listeners(replier, watches, pool, outbox, settings.visibility).register(app, EventDeduper())
    return SlackBot(app, pool, runtime, settings, store, poller)
