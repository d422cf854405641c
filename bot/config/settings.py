"""`Settings`: the groups every entry point needs (Defender, cache, budget, state, watches, logging)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.config import parsers
from bot.config import variables as v
from bot.config.defender import DefenderSettings, load_defender
from bot.config.kinds import Reader
from bot.config.names import check_names
from bot.defender.limits import BudgetCaps


@dataclass(frozen=True, slots=True)
class CacheSettings:
    ttl: float  # how long a device's alerts are served from cache
    max_stale: float  # how long older data is kept to answer (marked stale) when Defender fails
    maxsize: int  # devices kept


@dataclass(frozen=True, slots=True)
class StateSettings:
    url: str  # where watches live: sqlite:///path (the embedded default), or redis[s]://… for every shared state
    processes: int  # processes sharing the tenant; each takes 1/N of the budget while Redis is away


@dataclass(frozen=True, slots=True)
class WatchSettings:
    poll_seconds: float  # how often watched devices are checked


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    level: str | None  # DEBUG, INFO, WARNING or ERROR; None when unset: each entry point picks its own default
    format: str  # "text" or "json"


@dataclass(frozen=True, slots=True)
class Settings:
    defender: DefenderSettings
    cache: CacheSettings
    budget: BudgetCaps  # the Defender call budget per API: per_minute, per_hour and the background shares
    state: StateSettings
    watch: WatchSettings
    logging: LoggingSettings


def load_settings(env: Mapping[str, str]) -> Settings:
    """Read and validate every setting from `env` (see `read_environment`); `ConfigError` on the first bad one.

    Every entry point calls this with the whole environment, so a misspelled `BOT_`/`DEFENDER_`/`SLACK_` name stops
    any of them, whichever groups it reads."""
    check_names(env.keys())
    read = Reader(env)
    defender = load_defender(read)
    cache = CacheSettings(read.value(v.CACHE_TTL), read.value(v.CACHE_MAX_STALE), read.value(v.CACHE_MAXSIZE))
    budget = BudgetCaps(
        per_minute=read.value(v.CALLS_PER_MINUTE),
        per_hour=read.value(v.CALLS_PER_HOUR),
        background_minute_share=read.value(v.BACKGROUND_MINUTE_SHARE),
        background_hour_share=read.value(v.BACKGROUND_HOUR_SHARE),
    )
    state = StateSettings(state_url(read), read.value(v.PROCESSES))
    watch = WatchSettings(read.value(v.WATCH_POLL_SECONDS))
    level = read.get(v.LOG_LEVEL)
    logging = LoggingSettings(level.upper() if level else None, read.value(v.LOG_FORMAT))
    return Settings(defender, cache, budget, state, watch, logging)


def state_url(read: Reader) -> str:
    """`BOT_STATE_URL`; when unset, the platform's `REDIS_URL` (Heroku), else the SQLite default.

    TLS to Redis is verified unless `BOT_STATE_TLS_VERIFY=false` says otherwise (or the URL's own `ssl_cert_reqs`).
    """
    chosen = read.get(v.REDIS_URL) if read.raw(v.STATE_URL) is None else None
    url = chosen or read.value(v.STATE_URL)
    return url if read.value(v.STATE_TLS_VERIFY) else parsers.without_tls_verification(url)
