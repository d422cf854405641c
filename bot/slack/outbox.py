"""Posting to Slack: `response_url` webhooks and `chat.postMessage`, with retries for 429 and 5xx.

Bolt's own `respond()` neither retries nor raises; posting here does both properly and reports
success as a boolean, so a listener can log a lost answer instead of failing silently.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.webhook import WebhookClient

from bot.slack.blockkit import Message

log = logging.getLogger(__name__)


def retry_handlers() -> list[RetryHandler]:
    """429 waits out Retry-After; 5xx and dropped connections are retried a couple of times."""
    return [
        RateLimitErrorRetryHandler(max_retry_count=3),
        ServerErrorRetryHandler(max_retry_count=2),
        ConnectionErrorRetryHandler(max_retry_count=2),
    ]


def web_client(token: str, base_url: str) -> WebClient:
    return WebClient(token=token, base_url=base_url, timeout=15, retry_handlers=retry_handlers())


class Outbox:
    """Where answers leave the bot."""

    def __init__(self, client: WebClient) -> None:
        self._client = client

    def respond(
        self, response_url: str, message: Message, *, in_channel: bool = False, replace_original: bool = False
    ) -> bool:
        """Post through a command's or button's `response_url` (works in DMs and channels the bot is not in)."""
        body: dict[str, Any] = {**message.payload(), "replace_original": replace_original}
        if not replace_original:  # a replacement keeps the visibility of the message it replaces
            body["response_type"] = "in_channel" if in_channel else "ephemeral"
        try:
            response = WebhookClient(response_url, timeout=15, retry_handlers=retry_handlers()).send_dict(body)
        except (SlackClientError, OSError) as exc:
            log.warning("could not reach response_url: %s", type(exc).__name__)
            return False
        if response.status_code != 200:
            # 404 means the response_url expired (30 minutes, 5 uses).
            log.warning("response_url answered %d %s", response.status_code, response.body[:100])
            return False
        return True

    def post(self, channel: str, message: Message, *, thread_ts: str | None = None) -> bool:
        """`chat.postMessage`, in a thread when `thread_ts` is given."""
        try:
            self._client.chat_postMessage(channel=channel, thread_ts=thread_ts, unfurl_links=False, **message.payload())
        except SlackApiError as exc:
            log.warning("chat.postMessage to %s failed: %s", channel, exc.response.get("error"))
            return False
        except (SlackClientError, OSError) as exc:
            log.warning("chat.postMessage to %s failed: %s", channel, type(exc).__name__)
            return False
        return True
