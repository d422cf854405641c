"""Which implementation each piece of shared state gets: Redis when `BOT_STATE_URL=redis://…`, else local.

Used where a process is wired (`bot/slack/app.py`), so that module only names what it needs.
"""

from __future__ import annotations

from typing import Any

from bot.access.ratelimit import RequestLimiter
from bot.runtime import Runtime
from bot.shared.redis_state import SharedStateDown
from bot.slack.listeners import EventDeduper
from bot.watch.store import SqliteWatchStore, WatchStore

# With several processes the lease is renewed every half interval and lasts 1.5 intervals, so a process that
# dies is replaced within two intervals (one SQLite file keeps the single-process 2.5 intervals).
SHARED_LEASE_INTERVALS = 1.5


def watch_store(runtime: Runtime) -> WatchStore:
    if runtime.shared is None:
        return SqliteWatchStore.from_url(runtime.settings.state_url)
    from bot.shared.redis_store import RedisWatchStore

    return RedisWatchStore(runtime.shared)


def event_deduper(runtime: Runtime) -> EventDeduper:
    if runtime.shared is None:
        return EventDeduper()
    from bot.shared.redis_dedupe import RedisEventDeduper

    return RedisEventDeduper(runtime.shared)


def request_limiter(runtime: Runtime, *, user_per_minute: int, channel_per_minute: int) -> RequestLimiter:
    if runtime.shared is None:
        return RequestLimiter(user_per_minute=user_per_minute, channel_per_minute=channel_per_minute)
    from bot.shared.redis_limits import RedisRequestLimiter

    return RedisRequestLimiter(runtime.shared, user_per_minute=user_per_minute, channel_per_minute=channel_per_minute)


def poller_options(runtime: Runtime) -> dict[str, Any]:
    """Extra `Poller` arguments: the shorter lease of a cluster."""
    if runtime.shared is None:
        return {}
    return {"lease_ttl": runtime.settings.watch_poll_seconds * SHARED_LEASE_INTERVALS}


def live_watch_count(store: WatchStore) -> int | None:
    """For /healthz: None while the shared store is unreachable (the health document still answers)."""
    try:
        return len(store.live_watches())
    except SharedStateDown:
        return None


def pending_reply_count(store: WatchStore) -> int | None:
    """For metrics: None while the shared store is unreachable."""
    try:
        return len(store.pending_replies())
    except SharedStateDown:
        return None


def shared_state_status(runtime: Runtime) -> str:
    """`local` (one process), `redis` or `redis-unavailable` (running on process-local state)."""
    if runtime.shared is None:
        return "local"
    return "redis" if runtime.shared.ping() else "redis-unavailable"
