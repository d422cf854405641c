"""The Slack edge of one process: the Bolt app, listeners, work pool, watches, health and metrics."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from slack_bolt import App
from slack_sdk import WebClient

from bot.access.audit import AuditLog
from bot.alerts.mirror import GraphAlertSource
from bot.alerts.triage import Actor, Triage, TriageResult
from bot.config import SlackSettings
from bot.defender.client import DefenderClient
from bot.defender.limits import Api, Budget
from bot.runtime.core import Runtime
from bot.slack import bolt
from bot.slack.actions import ButtonSeal
from bot.slack.cards import CardContext
from bot.slack.details import AlertDetails, ControlDeps
from bot.slack.gate import Gate
from bot.slack.listeners import Listeners
from bot.slack.modal_api import SlackModals
from bot.slack.poster import Poster, web_client
from bot.slack.recovery import AcceptedWork
from bot.slack.replies import Replier
from bot.slack.triage import AlertTriage
from bot.slack.usergroups import SlackMemberships
from bot.slack.watching import SlackWatches
from bot.slack.work import WorkPool
from bot.state.factory import (
    live_watch_count,
    pending_reply_count,
    watch_store_problem,
)
from bot.state.watches import WatchStore
from bot.telemetry import metrics
from bot.watch.notes import record_slack_change
from bot.watch.poller import Poller

log = logging.getLogger(__name__)


def budget_left(budget: Budget) -> Iterator[tuple[str, int, int]]:
    """(endpoint, calls left this minute, calls left this hour) for each Defender API."""
    for api in Api:
        usage = budget.usage(api)
        yield api.value, usage.minute_left, usage.hour_left


def health_problems(
    shared_state: str, watch_poll_failing: str | None, watch_state_lost: str | None = None
) -> list[str]:
    """The dependencies `/healthz` reports down: `shared-state-unavailable` (Redis configured, not answering),
    `watch-store-failing` (the last watch poll failed, e.g. an unwritable or full SQLite file) and
    `watch-state-lost` (Redis lost the watches since this process started: emptied, or restarted without
    persistence)."""
    problems = []
    if shared_state == "redis-unavailable":
        problems.append("shared-state-unavailable")
    if watch_poll_failing is not None:
        problems.append("watch-store-failing")
    if watch_state_lost is not None:
        problems.append("watch-state-lost")
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
    memberships: SlackMemberships
    draining: threading.Event = field(default_factory=threading.Event)  # set on SIGTERM: no new work is taken

    def start_background(self) -> None:
        """Start the watch poller (in `http` and `socket` processes; the store's lease keeps it to one) and the
        recovery of acknowledged commands a stopped process left."""
        self.poller.start()
        self.accepted.start(self.listeners.answer_accepted)

    def health(self) -> dict[str, Any]:
        """A small status document for `GET /healthz`: no secrets, no alert data.

        Always HTTP 200 (a restart does not bring Redis or a disk back, and the bot still answers lookups): `status`
        is `draining` once the process is stopping (it finishes acknowledged work; `/readyz` answers 503), else
        `degraded` when a configured dependency is down, and `problems` names each with a fixed word.
        """
        budget = {
            endpoint: {"minute_left": minute_left, "hour_left": hour_left}
            for endpoint, minute_left, hour_left in budget_left(self.runtime.budget)
        }
        shared_state = self.runtime.state.status()
        store_problem = watch_store_problem(self.store)  # e.g. "its database is full"
        problems = health_problems(shared_state, self.poller.failing or store_problem, self.poller.state_lost)
        return {
            "status": "draining" if self.draining.is_set() else "degraded" if problems else "ok",
            "problems": problems,
            "defender_backend": self.runtime.settings.defender.backend.value,
            "defender_api": self.runtime.settings.defender.api.value,
            "cached_devices": self.runtime.service.cached_devices,
            "budget": budget,
            "lookups": {"in_use": self.pool.in_use, "capacity": self.pool.capacity},
            "watches": {
                "live": live_watch_count(self.store),
                "poll_interval_seconds": self.poller.interval,
                **({"state_lost": self.poller.state_lost} if self.poller.state_lost else {}),
                **({"problem": store_problem} if store_problem else {}),
            },
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
        self.memberships.close()  # its readers: a read under way ends on its own (2 s timeout)
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
    card_context = _card_contexts(runtime, settings, seal)

    # Membership is read in the background (a request waits for it a bounded time in all): see SlackMemberships.
    memberships = SlackMemberships(WebClient(token=settings.bot_token.reveal(), base_url=settings.api_url, timeout=2))
    # Known before the first request, where Slack answers: access rules' groups and triage's.
    memberships.read(settings.access.policy.usergroup_ids | settings.access.triage.usergroups)
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
    modals = SlackModals.for_token(settings.bot_token.reveal(), settings.api_url)
    controls = ControlDeps(runtime.service, gate, audit, seal, poster, modals, card_context, listeners.submit)
    _register_alert_controls(app, runtime, settings, controls, memberships, listeners, (store, poller))
    registry = _registry(runtime, store, pool)
    return SlackBot(
        app, pool, runtime, settings, store, poller, seal, audit, registry, listeners, accepted, memberships
    )


def _register_alert_controls(
    app: App,
    runtime: Runtime,
    settings: SlackSettings,
    controls: ControlDeps,
    memberships: SlackMemberships,
    listeners: Listeners,
    watching: tuple[WatchStore, Poller],
) -> None:
    """Details for everyone; triage's menu and forms (refused unless BOT_TRIAGE=on and the person is listed)."""
    details = AlertDetails(controls)
    details.register(app)
    client = runtime.client
    writer = client if isinstance(client, DefenderClient | GraphAlertSource) else None
    if writer is None:
        log.warning("this alert source cannot write alerts: triage from Slack is unavailable")
        return
    triage = Triage(runtime.service, writer, runtime.state.event_deduper(), runtime.state.cache)
    store, poller = watching

    def tell_watches(result: TriageResult, actor: Actor) -> None:
        """The change in each watch's thread on the device, once, saying who (the poller posts it now)."""
        if result.alert is not None and record_slack_change(store, result.alert, actor.user_id, datetime.now(UTC)):
            poller.deliver_soon()

    contact = settings.access.policy.contact
    triage_policy = settings.access.triage
    AlertTriage(controls, details, triage, triage_policy, memberships, contact=contact, redraw=listeners.card_for,
                notes=tell_watches).register(app)  # fmt: skip


def _card_contexts(runtime: Runtime, settings: SlackSettings, seal: ButtonSeal) -> Callable[[], CardContext]:
    def card_context() -> CardContext:
        return CardContext(
            runtime.settings.defender.portal_url,
            runtime.link_tenant_id,
            max_alerts=settings.card_alerts,
            seal=seal,
            triage=settings.access.triage.enabled,
        )

    return card_context


def _registry(runtime: Runtime, store: WatchStore, pool: WorkPool) -> CollectorRegistry:
    state = metrics.State(
        budget_left=lambda: budget_left(runtime.budget),
        cached_devices=lambda: runtime.service.cached_devices,
        live_watches=lambda: live_watch_count(store) or 0,  # 0 while Redis is away (/healthz says so)
        pending_followups=lambda: pending_reply_count(store) or 0,
        lookups_in_use=lambda: pool.in_use,
    )
    return metrics.bot_registry(state)
