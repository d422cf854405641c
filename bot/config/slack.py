"""The Slack and access groups, read only by the Slack entry points (`http`, `socket`, the demo)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.access.policy import AccessPolicy
from bot.access.triage import TriagePolicy
from bot.config import variables as v
from bot.config.kinds import ConfigError, Reader, Secret


class SlackMode(enum.Enum):
    HTTP = "http"
    SOCKET = "socket"


class Visibility(enum.Enum):
    IN_CHANNEL = "in_channel"
    EPHEMERAL = "ephemeral"


@dataclass(frozen=True, slots=True)
class AccessSettings:
    policy: AccessPolicy  # allow-lists, device-group policy, Slack Connect, whom to ask
    user_rate_per_minute: int  # 0: no limit
    channel_rate_per_minute: int
    audit_log: str  # "stderr", "off" or a file path
    triage: TriagePolicy = field(default_factory=TriagePolicy)  # who may change alerts from Slack (off: nobody)


@dataclass(frozen=True, slots=True)
class SlackSettings:
    mode: SlackMode
    bot_token: Secret
    signing_secret: Secret | None  # required in HTTP mode
    previous_signing_secret: Secret | None  # accepted as well while the signing secret is rotated
    app_token: Secret | None  # required in Socket Mode
    api_url: str  # ends with "/"
    port: int | None  # None: not set (Socket Mode then serves no health endpoint)
    host: str  # the address the HTTP server and the health endpoint listen on
    visibility: Visibility
    workers: int
    max_pending: int
    card_alerts: int
    access: AccessSettings
    drain_seconds: float = 25.0  # SIGTERM/SIGINT: how long acknowledged work may take to finish
    takeover_seconds: float = 15.0  # how soon a dead process's acknowledged commands are answered by another

    @property
    def button_secret(self) -> Secret:
        """What button values are sealed with: the signing secret, or the app token in Socket Mode without one."""
        secret = self.signing_secret or self.app_token
        if secret is None:  # load_slack_settings requires one of them for each mode
            raise ConfigError(f"{v.SLACK_SIGNING_SECRET.name}: required to seal button values")
        return secret

    @property
    def request_secrets(self) -> tuple[str, ...]:
        """The secrets a request's signature may be made with: the current one first, then the previous."""
        return tuple(s.reveal() for s in (self.signing_secret, self.previous_signing_secret) if s is not None)

    @property
    def previous_button_secrets(self) -> tuple[str, ...]:
        """Older secrets whose sealed buttons still open: the previous signing secret while it is set."""
        return (self.previous_signing_secret.reveal(),) if self.previous_signing_secret else ()

    @property
    def http_port(self) -> int:
        return self.port or 3000


def slack_mode(env: Mapping[str, str]) -> SlackMode:
    """Socket Mode when an app-level token is configured, HTTP mode otherwise."""
    return SlackMode.SOCKET if Reader(env).raw(v.SLACK_APP_TOKEN) else SlackMode.HTTP


def load_slack_settings(mode: SlackMode, env: Mapping[str, str]) -> SlackSettings:
    """Read and validate the Slack settings for `mode`; a missing one names every variable that is missing."""
    read = Reader(env)
    required = [v.SLACK_BOT_TOKEN, v.SLACK_SIGNING_SECRET if mode is SlackMode.HTTP else v.SLACK_APP_TOKEN]
    missing = [variable.name for variable in required if read.raw(variable) is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)}: required for {mode.value} mode (see the README's Configuration)")
    return SlackSettings(
        mode=mode,
        bot_token=read.value(v.SLACK_BOT_TOKEN),
        app_token=read.get(v.SLACK_APP_TOKEN),
        signing_secret=read.get(v.SLACK_SIGNING_SECRET),
        previous_signing_secret=read.get(v.SLACK_SIGNING_SECRET_PREVIOUS),
        api_url=read.value(v.SLACK_API_URL).rstrip("/") + "/",
        port=read.get(v.PORT),
        host=read.value(v.HTTP_HOST),
        visibility=Visibility(read.value(v.VISIBILITY)),
        workers=read.value(v.WORKERS),
        max_pending=read.value(v.MAX_PENDING),
        card_alerts=read.value(v.CARD_ALERTS),
        access=_access(read),
        drain_seconds=read.value(v.DRAIN_SECONDS),
        takeover_seconds=read.value(v.TAKEOVER_SECONDS),
    )


def _access(read: Reader) -> AccessSettings:
    """The allow-lists and device-group policy (each unset variable allows everything it covers), limits, audit."""
    groups = read.value(v.DEVICE_GROUP_POLICY)
    policy = AccessPolicy(
        channels=read.get(v.ALLOWED_CHANNELS),
        users=read.get(v.ALLOWED_USERS),
        usergroups=read.get(v.ALLOWED_USERGROUPS),
        groups=groups,
        allow_external=read.value(v.ALLOW_EXTERNAL),
        contact=read.value(v.ACCESS_CONTACT),
    )
    return AccessSettings(
        policy=policy,
        user_rate_per_minute=read.value(v.USER_RATE),
        channel_rate_per_minute=read.value(v.CHANNEL_RATE),
        audit_log=read.value(v.AUDIT_LOG),
        triage=TriagePolicy(
            enabled=read.value(v.TRIAGE) == "on",
            users=read.get(v.TRIAGE_USERS) or frozenset(),
            usergroups=read.get(v.TRIAGE_USERGROUPS) or frozenset(),
        ),
    )
