"""Configuration: read once at start-up from the environment (and `.env`), validated into `Settings`.

A missing or invalid value stops start-up with one `ConfigError` line that names the variable and what
is expected. Secret values are wrapped in `Secret`, which never shows its value in `repr`, `str`,
errors or logs.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from dotenv import dotenv_values

from bot.access.policy import DEFAULT_CONTACT, AccessPolicy, GroupPolicy, PolicyError, parse_group_policy, parse_id_list
from bot.defender.clouds import Cloud, is_well_known_authority

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_TENANT_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
_INTEGER = re.compile(r"[+-]?\d+")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# Variables that say "connect to a real tenant"; tuning knobs such as the budget do not.
_CONNECTION_VARS = (
    "DEFENDER_TENANT_ID",
    "DEFENDER_CLIENT_ID",
    "DEFENDER_CLIENT_SECRET",
    "DEFENDER_CLIENT_CERTIFICATE_PATH",
    "DEFENDER_CLOUD",
    "DEFENDER_API_URL",
    "DEFENDER_AUTHORITY_URL",
    "DEFENDER_SCOPE",
)
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_T = TypeVar("_T")


class ConfigError(Exception):
    """One line naming the variable and what it must be; never contains a secret."""


class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Backend(enum.Enum):
    API = "api"
    SIMULATOR = "simulator"


@dataclass(frozen=True, slots=True)
class CertificateCredential:
    """A PEM private key and the SHA-1 thumbprint of its certificate, as MSAL expects them."""

    private_key: Secret
    thumbprint: str

    def for_msal(self) -> dict[str, str]:
        return {"private_key": self.private_key.reveal(), "thumbprint": self.thumbprint}


@dataclass(frozen=True, slots=True)
class Settings:
    backend: Backend
    # True when no Defender variable was set at all and the simulator was picked for that reason.
    backend_defaulted: bool
    cloud: Cloud
    tenant_id: str | None
    client_id: str | None
    client_secret: Secret | None
    certificate: CertificateCredential | None
    api_url: str
    authority_url: str  # login host with the tenant appended
    instance_discovery: bool
    scope: str
    portal_url: str
    request_timeout: float
    cache_ttl: float
    cache_max_stale: float
    cache_maxsize: int
    calls_per_minute: int
    calls_per_hour: int
    background_minute_share: float
    background_hour_share: float
    state_url: str  # where watches live: sqlite:///path (the embedded default), or redis[s]://… for every shared state
    watch_poll_seconds: float
    processes: int  # BOT_PROCESSES: processes sharing the tenant; each takes 1/N of the budget while Redis is away
    simulator_url: str | None  # DEFENDER_SIMULATOR_URL: the simulator served over HTTP (multi-process tests)
    log_level: str | None  # None when unset: each entry point picks its own default
    log_format: str  # "text" or "json"


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        return value.strip() if value is not None and value.strip() else None

    def parse(self, name: str, default: _T, convert: Callable[[str], _T], expected: str) -> _T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return convert(value)
        except ValueError:
            raise ConfigError(f"{name}: expected {expected}, got {value!r}") from None

    def number(self, name: str, default: float, *, minimum: float, maximum: float) -> float:
        def convert(text: str) -> float:
            number = float(text)
            if not minimum <= number <= maximum:
                raise ValueError
            return number

        return self.parse(name, default, convert, f"a number from {minimum:g} to {maximum:g}")

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        def convert(text: str) -> int:
            if not _INTEGER.fullmatch(text):
                raise ValueError
            number = int(text)
            if not minimum <= number <= maximum:
                raise ValueError
            return number

        return self.parse(name, default, convert, f"a whole number from {minimum} to {maximum}")

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> str:
        def convert(text: str) -> str:
            if text.lower() not in options:
                raise ValueError
            return text.lower()

        return self.parse(name, default, convert, " | ".join(options))

    def url(self, name: str, default: str) -> str:
        def convert(text: str) -> str:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
            secure = parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK)
            if not secure or not parts.hostname or parts.query or parts.fragment:
                raise ValueError
            return text.rstrip("/")

        return self.parse(name, default, convert, "an https:// URL without query (http:// only for localhost)")


def _state_url(text: str) -> str:
    from bot.state.sqlite import sqlite_path
    from bot.state.urls import RedactedUrl, is_redis_url, parse_redis_url

    if is_redis_url(text):
        try:
            parse_redis_url(text)
        except ValueError as exc:  # said without the value: it may hold a password
            raise ConfigError(f"BOT_STATE_URL: {exc} (expected redis[s]://[:password@]host[:port][/db])") from None
        return RedactedUrl(text)  # its repr (in Settings) hides the password
    sqlite_path(text)  # raises ValueError for anything but sqlite:///…
    return text


def _load_certificate(path_text: str) -> CertificateCredential:
    """Read a PEM file holding the private key and its certificate; compute the thumbprint."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    name = "DEFENDER_CLIENT_CERTIFICATE_PATH"
    try:
        data = Path(path_text).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path_text!r} ({exc.strerror})") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{name}: {path_text!r} holds no unencrypted PEM private key") from None
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ConfigError(f"{name}: {path_text!r} holds no PEM certificate") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.PEM, public) != certificate.public_key().public_bytes(
        serialization.Encoding.PEM, public
    ):
        raise ConfigError(f"{name}: the private key in {path_text!r} does not belong to its certificate")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # Entra identifies the certificate by its SHA-1 thumbprint (x5t): a protocol name, not a security choice.
    thumbprint = certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    return CertificateCredential(Secret(pem.decode()), thumbprint)


def _environment(env: Mapping[str, str] | None, dotenv_path: str | Path | None) -> dict[str, str]:
    """The process environment (or `env`) over the `.env` file's values."""
    merged: dict[str, str] = {}
    if dotenv_path is not None and Path(dotenv_path).is_file():
        merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    merged.update(os.environ if env is None else env)
    return merged


def load_settings(env: Mapping[str, str] | None = None, *, dotenv_path: str | Path | None = ".env") -> Settings:
    """Read and validate every setting; raise `ConfigError` on the first bad one.

    Real environment variables win over the `.env` file.
    """
    merged = _environment(env, dotenv_path)
    read = _Reader(merged)

    # The simulator is the default only where nothing points at a real tenant.
    backend_defaulted = read.raw("DEFENDER_BACKEND") is None and not any(read.raw(n) for n in _CONNECTION_VARS)
    backend = Backend(
        read.choice("DEFENDER_BACKEND", "simulator" if backend_defaulted else "api", ("api", "simulator"))
    )
    cloud = Cloud(read.choice("DEFENDER_CLOUD", "commercial", tuple(c.value for c in Cloud)))
    endpoints = cloud.endpoints

    tenant_id = read.raw("DEFENDER_TENANT_ID")
    client_id = read.raw("DEFENDER_CLIENT_ID")
    secret_text = read.raw("DEFENDER_CLIENT_SECRET")
    certificate_path = read.raw("DEFENDER_CLIENT_CERTIFICATE_PATH")
    certificate: CertificateCredential | None = None
    if backend is Backend.API:
        if tenant_id is None:
            raise ConfigError(
                "DEFENDER_TENANT_ID: required (the Entra tenant id, a GUID) unless DEFENDER_BACKEND=simulator"
            )
        if not (_GUID.fullmatch(tenant_id) or _TENANT_DOMAIN.fullmatch(tenant_id)):
            raise ConfigError(
                f"DEFENDER_TENANT_ID: expected a GUID or a domain like contoso.onmicrosoft.com, got {tenant_id!r}"
            )
        if client_id is None:
            raise ConfigError("DEFENDER_CLIENT_ID: required (the app registration's client id, a GUID)")
        if not _GUID.fullmatch(client_id):
            raise ConfigError(f"DEFENDER_CLIENT_ID: expected a GUID, got {client_id!r}")
        if secret_text and certificate_path:
            raise ConfigError("DEFENDER_CLIENT_SECRET: set either it or DEFENDER_CLIENT_CERTIFICATE_PATH, not both")
        if not secret_text and not certificate_path:
            raise ConfigError(
                "DEFENDER_CLIENT_SECRET: required (or DEFENDER_CLIENT_CERTIFICATE_PATH for a certificate)"
            )
        if certificate_path:
            certificate = _load_certificate(certificate_path)

    authority_host = read.url("DEFENDER_AUTHORITY_URL", endpoints.authority_host)
    scope = read.raw("DEFENDER_SCOPE") or endpoints.scope
    if not scope.startswith("https://") or not urlsplit(scope).hostname or not scope.endswith("/.default"):
        raise ConfigError(f"DEFENDER_SCOPE: expected an https:// resource ending in /.default, got {scope!r}")

    return Settings(
        backend=backend,
        backend_defaulted=backend_defaulted,
        cloud=cloud,
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=Secret(secret_text) if secret_text and backend is Backend.API else None,
        certificate=certificate,
        api_url=read.url("DEFENDER_API_URL", endpoints.api_base),
        authority_url=f"{authority_host}/{tenant_id or 'common'}",
        instance_discovery=is_well_known_authority(authority_host),
        scope=scope,
        portal_url=endpoints.portal,
        request_timeout=read.number("DEFENDER_TIMEOUT_SECONDS", 20.0, minimum=1, maximum=120),
        cache_ttl=read.number("ALERT_CACHE_TTL_SECONDS", 60.0, minimum=0, maximum=3600),
        cache_max_stale=read.number("ALERT_CACHE_MAX_STALE_SECONDS", 900.0, minimum=0, maximum=86400),
        cache_maxsize=read.integer("ALERT_CACHE_MAXSIZE", 2048, minimum=1, maximum=1_000_000),
        calls_per_minute=read.integer("DEFENDER_CALLS_PER_MINUTE", 100, minimum=1, maximum=100_000),
        calls_per_hour=read.integer("DEFENDER_CALLS_PER_HOUR", 1500, minimum=1, maximum=1_000_000),
        background_minute_share=read.number("DEFENDER_BACKGROUND_MINUTE_SHARE", 0.5, minimum=0, maximum=1),
        background_hour_share=read.number("DEFENDER_BACKGROUND_HOUR_SHARE", 0.8, minimum=0, maximum=1),
        state_url=read.parse(
            "BOT_STATE_URL", "sqlite:///device-alerts.db", _state_url, "sqlite:///path.db or redis://…"
        ),
        # BOT_TEST_WATCH_POLL_SECONDS is for tests only (below WATCH_POLL_SECONDS's minimum of 10 s).
        watch_poll_seconds=read.number("BOT_TEST_WATCH_POLL_SECONDS", 0.0, minimum=0.5, maximum=3600)
        or read.number("WATCH_POLL_SECONDS", 60.0, minimum=10, maximum=3600),
        processes=read.integer("BOT_PROCESSES", 1, minimum=1, maximum=100),
        simulator_url=read.url("DEFENDER_SIMULATOR_URL", "") or None,
        log_level=read.choice("LOG_LEVEL", "", tuple(level.lower() for level in _LOG_LEVELS)).upper() or None,
        log_format=read.choice("LOG_FORMAT", "text", ("text", "json")),
    )


class SlackMode(enum.Enum):
    HTTP = "http"
    SOCKET = "socket"


class Visibility(enum.Enum):
    IN_CHANNEL = "in_channel"
    EPHEMERAL = "ephemeral"


@dataclass(frozen=True, slots=True)
class SlackSettings:
    mode: SlackMode
    bot_token: Secret
    signing_secret: Secret | None  # required in HTTP mode
    app_token: Secret | None  # required in Socket Mode
    api_url: str
    port: int | None  # None: not set (Socket Mode then serves no health endpoint)
    visibility: Visibility
    workers: int
    max_pending: int
    card_alerts: int
    access: AccessPolicy
    user_rate_per_minute: int  # 0: no limit
    channel_rate_per_minute: int
    audit_log: str  # "stderr", "off" or a file path

    @property
    def button_secret(self) -> Secret:
        """What button values are sealed with: the signing secret, or the app token in Socket Mode without one."""
        secret = self.signing_secret or self.app_token
        if secret is None:  # load_slack_settings requires one of them for each mode
            raise ConfigError("SLACK_SIGNING_SECRET: required to seal button values")
        return secret

    @property
    def http_port(self) -> int:
        return self.port or 3000


def slack_mode(env: Mapping[str, str] | None = None, *, dotenv_path: str | Path | None = ".env") -> SlackMode:
    """Socket Mode when an app-level token is configured, HTTP mode otherwise."""
    return SlackMode.SOCKET if _Reader(_environment(env, dotenv_path)).raw("SLACK_APP_TOKEN") else SlackMode.HTTP


def load_slack_settings(
    mode: SlackMode, env: Mapping[str, str] | None = None, *, dotenv_path: str | Path | None = ".env"
) -> SlackSettings:
    """Read and validate the Slack settings for `mode`; a missing one names every variable that is missing."""
    read = _Reader(_environment(env, dotenv_path))
    required = ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET" if mode is SlackMode.HTTP else "SLACK_APP_TOKEN"]
    missing = [name for name in required if read.raw(name) is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)}: required for {mode.value} mode (see the README's Slack section)")
    bot_token = read.raw("SLACK_BOT_TOKEN") or ""
    if not bot_token.startswith(("xoxb-", "xoxe.xoxb-")):
        raise ConfigError("SLACK_BOT_TOKEN: expected a bot token starting with xoxb-")
    app_token = read.raw("SLACK_APP_TOKEN")
    if app_token is not None and not app_token.startswith("xapp-"):
        raise ConfigError("SLACK_APP_TOKEN: expected an app-level token starting with xapp-")
    signing_secret = read.raw("SLACK_SIGNING_SECRET")
    return SlackSettings(
        mode=mode,
        bot_token=Secret(bot_token),
        signing_secret=Secret(signing_secret) if signing_secret else None,
        app_token=Secret(app_token) if app_token else None,
        api_url=read.url("SLACK_API_URL", "https://slack.com/api") + "/",
        port=read.integer("PORT", 0, minimum=1, maximum=65535) or None,
        visibility=Visibility(read.choice("BOT_RESPONSE_VISIBILITY", "in_channel", ("in_channel", "ephemeral"))),
        # Lookups of one device wait on one Defender call, each holding a worker: an incident channel's burst
        # (200 commands for 10 devices) needs room to wait, not more Defender calls (docs/benchmarks.md).
        workers=read.integer("BOT_WORKERS", 16, minimum=1, maximum=256),
        max_pending=read.integer("BOT_MAX_PENDING", 256, minimum=0, maximum=10_000),
        card_alerts=read.integer("BOT_CARD_ALERTS", 10, minimum=1, maximum=20),
        access=_access_policy(read),
        user_rate_per_minute=read.integer("BOT_USER_RATE_PER_MINUTE", 20, minimum=0, maximum=100_000),
        channel_rate_per_minute=read.integer("BOT_CHANNEL_RATE_PER_MINUTE", 60, minimum=0, maximum=100_000),
        audit_log=read.parse("BOT_AUDIT_LOG", "stderr", _audit_target, "stderr, off or a path to a file"),
    )


def _access_policy(read: _Reader) -> AccessPolicy:
    """The allow-lists and device-group policy; each unset variable allows everything it covers."""

    def ids(name: str, kind: str) -> frozenset[str] | None:
        text = read.raw(name)
        if text is None:
            return None
        try:
            return parse_id_list(text, kind)
        except PolicyError as exc:
            raise ConfigError(f"{name}: {exc} (expected comma-separated {kind} ids)") from None

    policy_text = read.raw("BOT_DEVICE_GROUP_POLICY")
    try:
        groups = parse_group_policy(policy_text) if policy_text else GroupPolicy()
    except PolicyError as exc:
        raise ConfigError(f"BOT_DEVICE_GROUP_POLICY: {exc}") from None
    return AccessPolicy(
        channels=ids("BOT_ALLOWED_CHANNELS", "channel"),
        users=ids("BOT_ALLOWED_USERS", "user"),
        usergroups=ids("BOT_ALLOWED_USERGROUPS", "usergroup"),
        groups=groups,
        allow_external=read.choice("BOT_ALLOW_EXTERNAL", "false", ("true", "false")) == "true",
        contact=read.raw("BOT_ACCESS_CONTACT") or DEFAULT_CONTACT,
    )


def _audit_target(text: str) -> str:
    if text.lower() in ("stderr", "off"):
        return text.lower()
    if not Path(text).parent.is_dir() or Path(text).is_dir():
        raise ValueError
    return text
