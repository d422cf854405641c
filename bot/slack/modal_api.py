"""The two Web API calls behind alert details and triage: `views.open` and `users.info` (for an email).

`views.open` must come within 3 s of the click, with the click's single-use `trigger_id`: there is no retry
(a retried call would fail as `invalid_trigger_id`), so the client has no retry handlers and a short timeout.
An email comes from `users.info`, which shows it only when the app has `users:read.email`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import cachetools
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.slack.modals import View
from bot.slack.poster import Delivery

log = logging.getLogger(__name__)

VIEW_TIMEOUT = 3  # seconds: a trigger_id is worth nothing after that
EMAIL_TTL = 600.0


class EmailUnavailable(Exception):
    """Slack would not say the person's email: `reason` is said to them."""


class SlackModals:
    def __init__(self, client: WebClient, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._emails: cachetools.TTLCache[str, str] = cachetools.TTLCache(4096, EMAIL_TTL, clock)
        self._lock = threading.Lock()

    @classmethod
    def for_token(cls, token: str, base_url: str) -> SlackModals:
        return cls(WebClient(token=token, base_url=base_url, timeout=VIEW_TIMEOUT, retry_handlers=[]))

    def open(self, trigger_id: str, view: View) -> Delivery:
        """`views.open`; the error code (`expired_trigger_id`, `invalid_arguments`, …) when Slack refused it."""
        try:
            self._client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "unknown_error")
            details = (exc.response.get("response_metadata") or {}).get("messages")
            log.warning("views.open failed: %s %s", error, details or "")
            return Delivery(error=error)
        except (SlackClientError, OSError) as exc:
            log.warning("views.open failed: %s", type(exc).__name__)
            return Delivery(error=type(exc).__name__)
        return Delivery()

    def email_of(self, user_id: str) -> str:
        """The person's email from their Slack profile; `EmailUnavailable` saying why when there is none."""
        with self._lock:
            known = self._emails.get(user_id)
        if known is not None:
            return known
        try:
            response = self._client.users_info(user=user_id)
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "unknown_error")
            if error == "missing_scope":
                raise EmailUnavailable("the app lacks the users:read scope to read your Slack profile") from None
            raise EmailUnavailable(f"Slack did not return your profile ({error})") from None
        except (SlackClientError, OSError) as exc:
            raise EmailUnavailable(f"Slack could not be reached ({type(exc).__name__})") from None
        user = response.get("user") or {}
        email = (user.get("profile") or {}).get("email") if isinstance(user, dict) else None
        if not isinstance(email, str) or "@" not in email:
            raise EmailUnavailable(
                "Slack did not share your email address (the app needs the users:read.email scope, "
                "and your profile needs an email)"
            )
        with self._lock:
            self._emails[user_id] = email
        return email
