"""Posting to Slack: `response_url` webhooks and `chat.postMessage`, with retries for 429 and 5xx.

Bolt's own `respond()` neither retries nor raises; posting here does both properly and reports
success as a boolean, so a listener can log a lost answer instead of failing silently.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.web import SlackResponse
from slack_sdk.webhook import WebhookClient

from bot.slack.blockkit import Message
from bot.slack.errors import SlackErrorKind, classify
from bot.telemetry.metrics import SLACK_ERRORS

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


FOLLOWUP_EVENT = "device_alerts_followup"
ROOT_EVENT = "device_alerts_watch_card"
MAX_THREAD_PAGES = 20


class ThreadUnreadable(Exception):
    """Slack could not list a thread's replies right now."""


class NotInChannel(Exception):
    """Slack will not list a public channel's messages to a bot that posts there without being a member."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """How a Web API post went: the message's ts, or Slack's error code."""

    ts: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Poster:
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
            SLACK_ERRORS.labels("response_url", type(exc).__name__).inc()
            return False
        if response.status_code != 200:
            # 404 means the response_url expired (30 minutes, 5 uses).
            log.warning("response_url answered %d %s", response.status_code, response.body[:100])
            SLACK_ERRORS.labels("response_url", str(response.status_code)).inc()
            return False
        return True

    def post(
        self, channel: str, message: Message, *, thread_ts: str | None = None, reference: str | None = None
    ) -> Delivery:
        """`chat.postMessage`, in a thread when `thread_ts` is given.

        `reference` travels in the message's metadata so `find_reference` can tell later that it was posted;
        it is a follow-up's in a thread, a watch card's at the top level.
        """
        kind = FOLLOWUP_EVENT if thread_ts else ROOT_EVENT
        metadata = {"event_type": kind, "event_payload": {"reference": reference}} if reference else None
        return self._call(
            "chat.postMessage",
            channel,
            lambda: self._client.chat_postMessage(
                channel=channel, thread_ts=thread_ts, unfurl_links=False, metadata=metadata, **message.payload()
            ),
        )

    def post_ephemeral(self, channel: str, user: str, message: Message, *, thread_ts: str | None = None) -> Delivery:
        """`chat.postEphemeral`: seen only by `user` (refusals and "slow down" notes for mentions)."""
        return self._call(
            "chat.postEphemeral",
            channel,
            lambda: self._client.chat_postEphemeral(
                channel=channel, user=user, thread_ts=thread_ts, **message.payload()
            ),
        )

    def update(self, channel: str, ts: str, message: Message) -> Delivery:
        """`chat.update` of a message the bot posted (a watch's root card)."""
        return self._call(
            "chat.update", channel, lambda: self._client.chat_update(channel=channel, ts=ts, **message.payload())
        )

    def join(self, channel: str) -> Delivery:
        """`conversations.join` (public channels only; a private one needs an invitation). The caller says what a
        refusal means: in a DM or a private channel the bot is in, Slack refuses it and nothing is wrong."""
        try:
            self._client.conversations_join(channel=channel)
        except SlackApiError as exc:
            return Delivery(error=str(exc.response.get("error") or "unknown_error"))
        except (SlackClientError, OSError) as exc:
            return Delivery(error=type(exc).__name__)
        return Delivery(ts="")

    def find_reference(self, channel: str, thread_ts: str | None, reference: str, *, oldest: float = 0.0) -> str | None:
        """The ts of the bot's message whose metadata carries `reference`, or None if there is none.

        It looks in the thread of `thread_ts` (`conversations.replies`), or among the channel's top-level
        messages when `thread_ts` is None (`conversations.history`), from `oldest` on.
        Raises `ThreadUnreadable` when Slack cannot answer now (rate limit, 5xx, network): the caller must not
        conclude "not posted" from that. Raises `NotInChannel` where the bot posts without being a member
        (`conversations.join` first). Any other permanent refusal (a missing scope, a deleted thread) reads as
        None, so messages are still delivered, at least once, where the thread cannot be checked.
        """
        cursor: str | None = None
        for _ in range(MAX_THREAD_PAGES):
            try:
                if thread_ts is None:
                    response = self._client.conversations_history(
                        channel=channel, oldest=str(oldest), include_all_metadata=True, limit=15, cursor=cursor
                    )
                else:
                    response = self._client.conversations_replies(
                        channel=channel,
                        ts=thread_ts,
                        oldest=str(oldest),
                        include_all_metadata=True,
                        limit=15,
                        cursor=cursor,
                    )
            except SlackApiError as exc:
                error = str(exc.response.get("error") or "")
                if classify(error, exc.response.status_code) is SlackErrorKind.TRANSIENT:
                    raise ThreadUnreadable(error or str(exc.response.status_code)) from None
                if error == "not_in_channel":
                    raise NotInChannel(channel) from None
                log.warning("cannot check thread %s in %s for earlier posts: %s", thread_ts, channel, error)
                return None
            except (SlackClientError, OSError) as exc:
                raise ThreadUnreadable(type(exc).__name__) from None
            for message in response.get("messages") or []:
                payload = (message.get("metadata") or {}).get("event_payload") or {}
                if payload.get("reference") == reference:
                    return str(message["ts"])
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if cursor is None:
                return None
        log.warning("thread %s in %s is longer than the bot reads back; assuming not posted", thread_ts, channel)
        return None

    @staticmethod
    def _call(method: str, channel: str, call: Callable[[], SlackResponse]) -> Delivery:
        try:
            response = call()
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "unknown_error")
            log.warning("%s to %s failed: %s", method, channel, error)
            SLACK_ERRORS.labels(method, error[:40]).inc()
            return Delivery(error=error)
        except (SlackClientError, OSError) as exc:
            log.warning("%s to %s failed: %s", method, channel, type(exc).__name__)
            SLACK_ERRORS.labels(method, type(exc).__name__).inc()
            return Delivery(error=type(exc).__name__)
        return Delivery(ts=str(response.get("ts") or ""))


def in_background(work: Callable[[], object]) -> None:
    """Send a notice off the request thread: Bolt answers Slack only once the listener returns, and the 3 s
    acknowledgement must not wait for a post (nor a "busy" notice for the full pool it reports)."""
    threading.Thread(target=work, daemon=True, name="notice").start()
