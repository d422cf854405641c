"""The one place that turns a state URL into every backend a process uses.

`sqlite:///…` (the embedded default, one process): in-process budget, no shared cache, event dedupe and
request limits in memory, watches in a SQLite file. `redis://…` / `rediss://…` (several processes): all of
it in Redis, each piece falling back to process-local state while Redis is away, except watches, which say so.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.defender.limits import Budget, BudgetCaps
from bot.state.budget import RateBudget
from bot.state.cache import SharedCache
from bot.state.dedupe import EventDeduper
from bot.state.limits import RequestLimiter
from bot.state.mirror import MAX_ALERTS, MemoryMirror, MirrorStore
from bot.state.redis.budget import RedisRateBudget
from bot.state.redis.cache import RedisSharedCache
from bot.state.redis.connection import RedisConnection, RedisUnavailable
from bot.state.redis.dedupe import RedisEventDeduper
from bot.state.redis.limits import RedisRequestLimiter
from bot.state.redis.mirror import RedisMirror
from bot.state.redis.watches import RedisWatchStore
from bot.state.redis.work import RedisWorkStore
from bot.state.sqlite import SqliteWatchStore, sqlite_path
from bot.state.urls import is_redis_url
from bot.state.watches import WatchStore
from bot.state.work import MemoryWorkStore, WorkStore
from bot.state.work_sqlite import SqliteWorkStore

# With several processes the lease is renewed every half interval and lasts 1.5 intervals, so a process that
# dies is replaced within two intervals (one SQLite file keeps the single-process 2.5 intervals).
SHARED_LEASE_INTERVALS = 1.5


@dataclass(frozen=True, slots=True)
class StateOptions:
    url: str  # sqlite:///path (the embedded default) or redis[s]://…
    caps: BudgetCaps
    processes: int = 1  # processes sharing the tenant: each takes 1/N of the budget while Redis is away
    alerts_ttl: float = 900.0  # how long the shared cache keeps a device's alert list (fresh or stale)


class StateBackend:
    """Every piece of persistent and shared state of one process; `shared` is the Redis connection, if any."""

    def __init__(
        self, options: StateOptions, shared: RedisConnection | None, budget: Budget, cache: SharedCache | None
    ):
        self.options = options
        self.shared = shared
        self.budget = budget
        self.cache = cache  # None: the alert service's own process-local caches are all there is

    def watch_store(self) -> WatchStore:
        if self.shared is None:
            return SqliteWatchStore.from_url(self.options.url)
        return RedisWatchStore(self.shared)

    def work_store(self) -> WorkStore:
        """Where acknowledged commands wait until answered: Redis, the SQLite file, or (`:memory:`) this process."""
        if self.shared is not None:
            return RedisWorkStore(self.shared)
        if sqlite_path(self.options.url) == ":memory:":
            return MemoryWorkStore()
        return SqliteWorkStore(self.options.url)

    def mirror(self, max_alerts: int = MAX_ALERTS) -> MirrorStore:
        """Where the Graph alert mirror keeps alerts: this process, or Redis for every process."""
        return MemoryMirror(max_alerts) if self.shared is None else RedisMirror(self.shared, max_alerts)

    def event_deduper(self) -> EventDeduper:
        return EventDeduper() if self.shared is None else RedisEventDeduper(self.shared)

    def request_limiter(self, *, user_per_minute: int, channel_per_minute: int) -> RequestLimiter:
        if self.shared is None:
            return RequestLimiter(user_per_minute=user_per_minute, channel_per_minute=channel_per_minute)
        return RedisRequestLimiter(self.shared, user_per_minute=user_per_minute, channel_per_minute=channel_per_minute)

    def lease_ttl(self, poll_seconds: float) -> float | None:
        """The poller's lease: shorter in a cluster; None keeps the poller's single-process default."""
        return None if self.shared is None else poll_seconds * SHARED_LEASE_INTERVALS

    def status(self) -> str:
        """`local` (one process), `redis` or `redis-unavailable` (running on process-local state)."""
        if self.shared is None:
            return "local"
        return "redis" if self.shared.ping() else "redis-unavailable"

    def close(self) -> None:
        if self.shared is not None:
            self.shared.close()


def open_state(options: StateOptions) -> StateBackend:
    """Connect (Redis) or prepare (SQLite); an unreachable Redis is logged and the process starts on local state."""
    caps = options.caps
    if not is_redis_url(options.url):
        return StateBackend(options, None, RateBudget.from_caps(caps), None)
    shared = RedisConnection(options.url)
    shared.ping()
    shared_budget = RedisRateBudget(
        shared,
        caps.per_minute,
        caps.per_hour,
        background_minute_share=caps.background_minute_share,
        background_hour_share=caps.background_hour_share,
        per_api=caps.per_api,
        processes=options.processes,
    )
    return StateBackend(options, shared, shared_budget, RedisSharedCache(shared, alerts_ttl=options.alerts_ttl))


def live_watch_count(store: WatchStore) -> int | None:
    """For /healthz: None while the shared store is unreachable (the health document still answers)."""
    try:
        return len(store.live_watches())
    except RedisUnavailable:
        return None


def watch_store_problem(store: WatchStore) -> str | None:
    """For /healthz: why the SQLite file cannot be written (a full disk…), or None. Redis's is `status`."""
    return store.write_problem() if isinstance(store, SqliteWatchStore) else None


def pending_reply_count(store: WatchStore) -> int | None:
    """For metrics: None while the shared store is unreachable."""
    try:
        return len(store.pending_replies())
    except RedisUnavailable:
        return None
