"""The Bolt app itself: the start-up check of the bot token, and request verification with a rotation overlap.

Bolt's own verification takes one signing secret. While the secret is rotated, Slack may still sign requests
with the previous one (a deploy is not instantaneous), so the bot verifies requests itself, against the current
secret and, while `SLACK_SIGNING_SECRET_PREVIOUS` is set, the previous one. It sits where Bolt's check sits:
before authorisation, URL verification and every listener and middleware of the bot, and it logs nothing of
a request it refuses.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator, Sequence

from slack_bolt import App, BoltResponse
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_bolt.middleware import Middleware
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import SignatureVerifier

from bot.access.policy import Installation
from bot.config import SlackMode, SlackSettings

log = logging.getLogger(__name__)

_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # seconds since the epoch, as Slack sends them
STARTUP_TIMEOUT = 10  # seconds for the start-up `auth.test`; it is not retried


class StartupError(Exception):
    """Slack could not be reached, or refused the bot token, at start-up: one line that says which."""


class SignatureCheck(Middleware):
    """Refuses (401) any HTTP request whose `X-Slack-Signature` none of `secrets` made, or that is over 5 min old.

    Socket Mode requests arrive over an authenticated socket and are not signed: they pass.
    """

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("request verification needs a signing secret")
        self._verifiers = tuple(SignatureVerifier(secret) for secret in secrets)

    def verifies(self, body: str | bytes, timestamp: str, signature: str) -> bool:
        """Whether one of the secrets signed `body` at `timestamp`, less than 5 minutes ago."""
        if not _TIMESTAMP.fullmatch(timestamp):  # the verifier would raise on it: refuse it here, like any forgery
            return False
        # Every verifier runs, so the time taken does not tell which secret matched.
        valid = [verifier.is_valid(body, timestamp, signature) for verifier in self._verifiers]
        return any(valid)

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse | None:
        if req.mode == "socket_mode":
            return next()
        timestamp = req.headers.get("x-slack-request-timestamp", [""])[0]
        signature = req.headers.get("x-slack-signature", [""])[0]
        if self.verifies(req.raw_body, timestamp, signature):
            return next()
        return BoltResponse(status=401, body={"error": "invalid request"})


def installation(settings: SlackSettings) -> Installation:
    """Where the bot is installed, from one `auth.test` without retries: a bad token or no route fails at once."""
    client = WebClient(
        token=settings.bot_token.reveal(), base_url=settings.api_url, timeout=STARTUP_TIMEOUT, retry_handlers=[]
    )
    try:
        found = client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error") or exc.response.status_code
        raise StartupError(f"Slack refused the bot token ({error}): check SLACK_BOT_TOKEN") from None
    except (SlackClientError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise StartupError(
            f"Slack could not be reached at {settings.api_url} ({reason}): check the network, "
            "HTTPS_PROXY and SLACK_API_URL"
        ) from None
    return Installation(
        team_id=found.get("team_id") or None,
        enterprise_id=found.get("enterprise_id") or None,
        enterprise_install=bool(found.get("is_enterprise_install")),
    )


class _Without(logging.Filter):
    def __init__(self, message: str) -> None:
        super().__init__()
        self._message = message

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self._message


@contextlib.contextmanager
def _without(logger: logging.Logger, message: str) -> Iterator[None]:
    dropped = _Without(message)
    logger.addFilter(dropped)
    try:
        yield
    finally:
        logger.removeFilter(dropped)


def bolt_app(client: WebClient, settings: SlackSettings) -> App:
    """The Bolt app on `client`, verifying requests in HTTP mode with the current and the previous secret."""
    http_mode = settings.mode is SlackMode.HTTP
    logger = logging.getLogger("slack_bolt")
    # Bolt reads SLACK_BOT_TOKEN from the environment and warns that `client` wins over it: it does, and the
    # client carries that same token, so the warning says nothing.
    with _without(logger, warning_client_prioritized_and_token_skipped()):
        return App(
            client=client,
            signing_secret=settings.signing_secret.reveal() if settings.signing_secret else "",
            request_verification_enabled=False,  # SignatureCheck, in the same place, with the previous secret too
            before_authorize=SignatureCheck(settings.request_secrets) if http_mode else None,
            process_before_response=True,
            logger=logger,
        )
