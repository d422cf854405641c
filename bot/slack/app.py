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
from bot.slack.work import WorkPool

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SlackBot:
    app: App
    pool: WorkPool
    runtime: Runtime
    settings: SlackSettings

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
        }

    def close(self) -> None:
        self.pool.shutdown(wait=False)
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

    replier = Replier(runtime.service, card_context, backend=runtime.settings.backend.value)
    Listeners(replier, pool, Outbox(client), settings.visibility).register(app, EventDeduper())
    return SlackBot(app, pool, runtime, settings)
