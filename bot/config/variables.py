"""The table of variables: every setting the bot reads, with its kind, bounds, default, meaning and group.

This table drives parsing (`kinds.Reader`), the error messages (each kind says what it expects) and the
README's configuration tables (`docs.readme_rows`; tests/unit/config checks that the README agrees). The
rules that join several variables (which backend, secret or certificate, cloud defaults, Slack mode) are
small functions in `settings` and `slack`.
"""

from __future__ import annotations

from typing import Any

from bot.access.policy import DEFAULT_CONTACT, GroupPolicy
from bot.config import parsers
from bot.config.kinds import (
    Choice,
    External,
    Flag,
    Group,
    IdList,
    Integer,
    Number,
    Parsed,
    SecretText,
    Text,
    Url,
    Variable,
)
from bot.defender.clouds import Cloud

_PER_CLOUD = "per cloud"

# -- Defender --------------------------------------------------------------------------------------------------

BACKEND = Choice(
    name="DEFENDER_BACKEND", group=Group.DEFENDER, options=("api", "simulator"),
    shown="`api`; `demo` and `alerts` use `simulator` when none of tenant, client, secret, certificate, cloud, URLs "
    "or scope is set, `http` and `socket` refuse to start",
    meaning="`api` calls Defender; `simulator` uses the built-in simulated tenant",
)  # fmt: skip
TENANT_ID = Parsed(
    name="DEFENDER_TENANT_ID", group=Group.DEFENDER, parser=parsers.tenant,
    description="a GUID or a domain like contoso.onmicrosoft.com",
    meaning="Entra tenant id (GUID) or primary domain; required for `api`",
)  # fmt: skip
CLIENT_ID = Parsed(
    name="DEFENDER_CLIENT_ID", group=Group.DEFENDER, parser=parsers.guid, description="a GUID",
    meaning="the app registration's client id (GUID); required for `api`",
)  # fmt: skip
CLIENT_SECRET = SecretText(
    name="DEFENDER_CLIENT_SECRET", group=Group.DEFENDER, meaning="a client secret's value; set this or the next one"
)
CERTIFICATE_PATH = Text(
    name="DEFENDER_CLIENT_CERTIFICATE_PATH", group=Group.DEFENDER,
    meaning="PEM file with the unencrypted private key and its certificate; the thumbprint is computed from it",
)  # fmt: skip
CLOUD = Choice(
    name="DEFENDER_CLOUD", group=Group.DEFENDER, options=tuple(c.value for c in Cloud), default=Cloud.COMMERCIAL.value,
    meaning="`commercial`, `gcc`, `gcc-high` or `dod`: picks the login authority, API base, token scope and portal",
)  # fmt: skip
API_URL = Url(
    name="DEFENDER_API_URL", group=Group.DEFENDER, shown=_PER_CLOUD,
    meaning="API base override, e.g. a geo host such as `https://eu.api.security.microsoft.com`",
)  # fmt: skip
AUTHORITY_URL = Url(
    name="DEFENDER_AUTHORITY_URL", group=Group.DEFENDER, shown=_PER_CLOUD,
    meaning="login host override; the tenant is appended. For a host that is not a well-known Microsoft "
    "authority, MSAL instance discovery is turned off",
)  # fmt: skip
SCOPE = Parsed(
    name="DEFENDER_SCOPE", group=Group.DEFENDER, parser=parsers.scope, shown=_PER_CLOUD,
    description="an https:// resource ending in /.default",
    meaning="token scope override (`https://…/.default`)",
)  # fmt: skip
API = Choice(
    name="DEFENDER_API", group=Group.DEFENDER, options=("mde", "graph"), default="mde",
    meaning="where alerts come from: `mde`, the Defender for Endpoint API (Microsoft retires it on 1 Feb 2027), or "
    "`graph`, the Microsoft Graph security API: see [Microsoft Graph](#microsoft-graph)",
)  # fmt: skip
GRAPH_URL = Url(
    name="DEFENDER_GRAPH_URL", group=Group.DEFENDER, shown=_PER_CLOUD,
    meaning="Microsoft Graph host override (scheme and host, e.g. `https://graph.microsoft.com`; the bot adds "
    "`/v1.0/…`)",
)  # fmt: skip
GRAPH_SCOPE = Parsed(
    name="DEFENDER_GRAPH_SCOPE", group=Group.DEFENDER, parser=parsers.scope, shown=_PER_CLOUD,
    description="an https:// resource ending in /.default",
    meaning="token scope override for Microsoft Graph (`https://…/.default`)",
)  # fmt: skip
GRAPH_BACKFILL_DAYS = Integer(
    name="DEFENDER_GRAPH_BACKFILL_DAYS", group=Group.DEFENDER, default=30, minimum=1, maximum=180,
    meaning="with `graph`: how many days of alerts the bot reads at start-up; a card shows the device's alerts "
    "updated in that window",
)  # fmt: skip
TIMEOUT = Number(
    name="DEFENDER_TIMEOUT_SECONDS", group=Group.DEFENDER, default=20.0, minimum=1, maximum=120,
    meaning="read timeout of one Defender request (connect timeout is 5 s)",
)  # fmt: skip
_TRUST = "trust stores for the Defender API (httpx) and the identity provider (MSAL)"
SSL_CERT_FILE = External(name="SSL_CERT_FILE", group=Group.DEFENDER, shown="system", meaning=_TRUST)
REQUESTS_CA_BUNDLE = External(name="REQUESTS_CA_BUNDLE", group=Group.DEFENDER, shown="system", meaning=_TRUST)
# Variables that say "connect to a real tenant"; tuning knobs such as the budget do not.
CONNECTION = (
    TENANT_ID, CLIENT_ID, CLIENT_SECRET, CERTIFICATE_PATH, CLOUD, API_URL, AUTHORITY_URL, SCOPE, GRAPH_URL, GRAPH_SCOPE,
)  # fmt: skip

# -- alert cache -------------------------------------------------------------------------------------------------

CACHE_TTL = Number(
    name="ALERT_CACHE_TTL_SECONDS", group=Group.CACHE, default=60.0, minimum=0, maximum=3600,
    meaning="how long a device's alerts are served from cache",
)  # fmt: skip
CACHE_MAX_STALE = Number(
    name="ALERT_CACHE_MAX_STALE_SECONDS", group=Group.CACHE, default=900.0, minimum=0, maximum=86400,
    meaning="how long older data is kept to answer when Defender fails or throttles (marked stale)",
)  # fmt: skip
CACHE_MAXSIZE = Integer(
    name="ALERT_CACHE_MAXSIZE", group=Group.CACHE, default=2048, minimum=1, maximum=1_000_000,
    meaning="devices kept in the cache",
)  # fmt: skip

# -- Defender call budget ---------------------------------------------------------------------------------------

CALLS_PER_MINUTE = Integer(
    name="DEFENDER_CALLS_PER_MINUTE", group=Group.BUDGET, default=100, minimum=1, maximum=100_000,
    meaning="the bot's budget per Defender API per sliding minute",
)  # fmt: skip
CALLS_PER_HOUR = Integer(
    name="DEFENDER_CALLS_PER_HOUR", group=Group.BUDGET, default=1500, minimum=1, maximum=1_000_000,
    meaning="the bot's budget per Defender API per sliding hour",
)  # fmt: skip
BACKGROUND_MINUTE_SHARE = Number(
    name="DEFENDER_BACKGROUND_MINUTE_SHARE", group=Group.BUDGET, default=0.5, minimum=0, maximum=1,
    meaning="share of the minute window that background work (watch polling) may use",
)  # fmt: skip
BACKGROUND_HOUR_SHARE = Number(
    name="DEFENDER_BACKGROUND_HOUR_SHARE", group=Group.BUDGET, default=0.8, minimum=0, maximum=1,
    meaning="share of the hour window after which background work stops",
)  # fmt: skip

# -- shared state, watches, logging ------------------------------------------------------------------------------

STATE_URL = Parsed(
    name="BOT_STATE_URL", group=Group.STATE, parser=parsers.state_url, redact=parsers.redact_url,
    default="sqlite:///device-alerts.db", description="sqlite:///path.db or redis://…",
    meaning="where watches live: `sqlite:///relative/path.db`, `sqlite:////absolute/path.db`, or "
    "`sqlite:///:memory:` (gone when the process ends). `redis://[:password@]host[:port][/db]` (`rediss://` for "
    "TLS; `?prefix=` names the keys, `device-alerts` by default) moves every piece of shared state (watches, "
    "alert cache, Defender budget, event dedupe, per-person limits) into Redis, so several processes can run: "
    "[docs/scaling.md](docs/scaling.md)",
)  # fmt: skip
REDIS_URL = Parsed(
    name="REDIS_URL", group=Group.STATE, parser=parsers.redis_url, redact=parsers.redact_url,
    description="redis://… or rediss://…",
    meaning="used as `BOT_STATE_URL` when that is unset: Heroku's Key-Value Store sets it (and changes it when it "
    "rotates credentials); `BOT_STATE_URL` wins when both are set",
)  # fmt: skip
STATE_TLS_VERIFY = Flag(
    name="BOT_STATE_TLS_VERIFY", group=Group.STATE, default=True,
    meaning="`false` accepts any certificate from a `rediss://` server (still encrypted, not authenticated): "
    "only for a server whose certificate cannot be verified, such as Heroku's; see "
    "[docs/scaling.md](docs/scaling.md#tls-to-redis)",
)  # fmt: skip
PROCESSES = Integer(
    name="BOT_PROCESSES", group=Group.STATE, default=1, minimum=1, maximum=100,
    meaning="how many processes share one Redis; while Redis is unreachable each one spends at most `1/N` of "
    "the Defender budget",
)  # fmt: skip
WATCH_POLL_SECONDS = Number(
    name="WATCH_POLL_SECONDS", group=Group.WATCH, default=60.0, minimum=10, maximum=3600,
    meaning="how often watched devices are checked, `10`–`3600`; stretched while the budget is tight",
)  # fmt: skip
LOG_LEVEL = Choice(
    name="LOG_LEVEL", group=Group.LOGGING, options=("debug", "info", "warning", "error"),
    shown="`warning` for CLI commands, `info` for the bot", meaning="`debug`, `info`, `warning`, `error`",
)  # fmt: skip
LOG_FORMAT = Choice(
    name="LOG_FORMAT", group=Group.LOGGING, options=("text", "json"), default="text",
    meaning="`text`, or `json` for one JSON object per line (`time`, `level`, `logger`, `message`, "
    "`correlation_id`, `exception`)",
)  # fmt: skip

# -- Slack (read by `python -m bot http|socket` only) -------------------------------------------------------------

SLACK_BOT_TOKEN = SecretText(
    name="SLACK_BOT_TOKEN", group=Group.SLACK, prefixes=("xoxb-", "xoxe.xoxb-"),
    description="a bot token starting with xoxb-", meaning="the Bot User OAuth Token (`xoxb-…`); required",
)  # fmt: skip
SLACK_SIGNING_SECRET = SecretText(
    name="SLACK_SIGNING_SECRET", group=Group.SLACK, meaning="the app's Signing Secret; required in HTTP mode"
)
SLACK_SIGNING_SECRET_PREVIOUS = SecretText(
    name="SLACK_SIGNING_SECRET_PREVIOUS", group=Group.SLACK,
    meaning="while rotating the signing secret: the old one. Requests signed with it and buttons of cards sealed "
    "with it are still accepted; remove it a week after the rotation "
    "([docs/operations.md](docs/operations.md#slack-signing-secret))",
)  # fmt: skip
SLACK_APP_TOKEN = SecretText(
    name="SLACK_APP_TOKEN", group=Group.SLACK, prefixes=("xapp-",),
    description="an app-level token starting with xapp-",
    meaning="an app-level token (`xapp-…`) with `connections:write`; required in Socket Mode",
)  # fmt: skip
SLACK_API_URL = Url(
    name="SLACK_API_URL", group=Group.SLACK, default="https://slack.com/api/",
    meaning="Slack Web API base; GovSlack: `https://slack-gov.com/api/`",
)  # fmt: skip
PORT = Integer(
    name="PORT", group=Group.SLACK, minimum=1, maximum=65535, shown="`3000`",
    meaning="HTTP port. In Socket Mode the health endpoint is served only when `PORT` is set",
)  # fmt: skip
HTTP_HOST = Parsed(
    name="BOT_HTTP_HOST", group=Group.SLACK, parser=parsers.bind_host, default="0.0.0.0",  # noqa: S104
    description="an IP address or a host name",
    meaning="address the HTTP server (and Socket Mode's health endpoint) listens on: `127.0.0.1` behind a "
    "reverse proxy on the same host, `::` for IPv6",
)  # fmt: skip
VISIBILITY = Choice(
    name="BOT_RESPONSE_VISIBILITY", group=Group.SLACK, options=("in_channel", "ephemeral"), default="in_channel",
    meaning="who sees device cards from slash commands and mentions: `in_channel` (everyone in the channel) or "
    "`ephemeral` (only the person who asked); a watch always posts in its channel",
)  # fmt: skip
# Lookups of one device wait on one Defender call, each holding a worker: an incident channel's burst
# (200 commands for 10 devices) needs room to wait, not more Defender calls (docs/benchmarks.md).
WORKERS = Integer(
    name="BOT_WORKERS", group=Group.SLACK, default=16, minimum=1, maximum=256, meaning="lookups that run at once"
)
MAX_PENDING = Integer(
    name="BOT_MAX_PENDING", group=Group.SLACK, default=256, minimum=0, maximum=10_000,
    meaning="lookups that may wait for a worker before people are told the bot is busy",
)  # fmt: skip
# Heroku and most platforms send SIGTERM and kill 30 s later; the drain must end before that.
DRAIN_SECONDS = Number(
    name="BOT_DRAIN_SECONDS", group=Group.SLACK, default=25.0, minimum=0, maximum=3600,
    meaning="on SIGTERM or SIGINT, how long acknowledged lookups may take to finish before the process exits; "
    "what is left is answered after the restart (or by another process)",
)  # fmt: skip
TAKEOVER_SECONDS = Number(
    name="BOT_TAKEOVER_SECONDS", group=Group.SLACK, default=15.0, minimum=1, maximum=600,
    meaning="after how long another (or the restarted) process answers the acknowledged commands of a process "
    "that died",
)  # fmt: skip
CARD_ALERTS = Integer(
    name="BOT_CARD_ALERTS", group=Group.SLACK, default=10, minimum=1, maximum=20,
    meaning="top alerts shown on a card, `1`–`20`",
)  # fmt: skip

# -- access (read with the Slack settings) ------------------------------------------------------------------------

ALLOWED_CHANNELS = IdList(
    name="BOT_ALLOWED_CHANNELS", group=Group.ACCESS, kind="channel", shown="everyone",
    meaning="comma-separated channel ids (`C…`, `G…`) the bot answers in; `dm` allows direct messages",
)  # fmt: skip
ALLOWED_USERS = IdList(
    name="BOT_ALLOWED_USERS", group=Group.ACCESS, kind="user", shown="everyone",
    meaning="comma-separated user ids (`U…`, `W…`) who may use the bot",
)  # fmt: skip
ALLOWED_USERGROUPS = IdList(
    name="BOT_ALLOWED_USERGROUPS", group=Group.ACCESS, kind="usergroup", shown="everyone",
    meaning="comma-separated user-group ids (`S…`) whose members may use the bot (with `BOT_ALLOWED_USERS`: "
    "either list admits)",
)  # fmt: skip
DEVICE_GROUP_POLICY = Parsed(
    name="BOT_DEVICE_GROUP_POLICY", group=Group.ACCESS, parser=parsers.group_policy, default=GroupPolicy(),
    description="rules or a policy file", shown="every device",
    meaning="which Defender device groups each channel or user group may see: inline rules or a file path, "
    "see [Security model](#security-model)",
)  # fmt: skip
ALLOW_EXTERNAL = Flag(
    name="BOT_ALLOW_EXTERNAL", group=Group.ACCESS, default=False,
    meaning="`true` answers people from other organisations in Slack Connect channels",
)  # fmt: skip
ACCESS_CONTACT = Text(
    name="BOT_ACCESS_CONTACT", group=Group.ACCESS, default=DEFAULT_CONTACT,
    meaning="whom refusals tell people to ask, e.g. `#soc-platform`",
)  # fmt: skip
USER_RATE = Integer(
    name="BOT_USER_RATE_PER_MINUTE", group=Group.ACCESS, default=20, minimum=0, maximum=100_000,
    meaning="lookups and watches one person may start per minute (a minute's worth may come at once); "
    "`0` = no limit",
)  # fmt: skip
CHANNEL_RATE = Integer(
    name="BOT_CHANNEL_RATE_PER_MINUTE", group=Group.ACCESS, default=60, minimum=0, maximum=100_000,
    meaning="the same per channel, for everyone in it together; `0` = no limit",
)  # fmt: skip
AUDIT_LOG = Parsed(
    name="BOT_AUDIT_LOG", group=Group.ACCESS, parser=parsers.audit_target, default="stderr",
    description="stderr, off or a path to a file",
    meaning="where the audit trail goes: `stderr`, `off`, or a file path (appended, created `0600`)",
)  # fmt: skip

TRIAGE = Choice(
    name="BOT_TRIAGE", group=Group.ACCESS, options=("off", "on"), default="off",
    meaning="`on` lets the people below change alerts from Slack (assign, status, classify, comment); see "
    "[Triage from Slack](#triage-from-slack)",
)  # fmt: skip
TRIAGE_USERS = IdList(
    name="BOT_TRIAGE_USERS", group=Group.ACCESS, kind="user", shown="nobody",
    meaning="comma-separated user ids (`U…`, `W…`) who may change alerts when `BOT_TRIAGE=on`",
)  # fmt: skip
TRIAGE_USERGROUPS = IdList(
    name="BOT_TRIAGE_USERGROUPS", group=Group.ACCESS, kind="usergroup", shown="nobody",
    meaning="comma-separated user-group ids (`S…`) whose members may change alerts when `BOT_TRIAGE=on`",
)  # fmt: skip

# Every variable, in the README's order. A BOT_/DEFENDER_/SLACK_ name in the environment that is not here (a
# misspelling such as BOT_ALLOWED_CHANNEL) stops start-up: `names.check_names`.
VARIABLES: tuple[Variable[Any], ...] = (
    BACKEND, TENANT_ID, CLIENT_ID, CLIENT_SECRET, CERTIFICATE_PATH, CLOUD, API_URL, AUTHORITY_URL, SCOPE,
    API, GRAPH_URL, GRAPH_SCOPE, GRAPH_BACKFILL_DAYS, TIMEOUT,
    CACHE_TTL, CACHE_MAX_STALE, CACHE_MAXSIZE,
    CALLS_PER_MINUTE, CALLS_PER_HOUR, BACKGROUND_MINUTE_SHARE, BACKGROUND_HOUR_SHARE,
    STATE_URL, REDIS_URL, STATE_TLS_VERIFY, PROCESSES, WATCH_POLL_SECONDS, LOG_LEVEL, LOG_FORMAT, SSL_CERT_FILE,
    REQUESTS_CA_BUNDLE,
    SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, SLACK_SIGNING_SECRET_PREVIOUS, SLACK_APP_TOKEN, SLACK_API_URL, PORT,
    HTTP_HOST, VISIBILITY, WORKERS, MAX_PENDING, DRAIN_SECONDS, TAKEOVER_SECONDS, CARD_ALERTS, ALLOWED_CHANNELS,
    ALLOWED_USERS, ALLOWED_USERGROUPS,
    DEVICE_GROUP_POLICY, ALLOW_EXTERNAL, ACCESS_CONTACT, USER_RATE, CHANNEL_RATE, AUDIT_LOG,
    TRIAGE, TRIAGE_USERS, TRIAGE_USERGROUPS,
)  # fmt: skip
