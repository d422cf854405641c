"""Slack's requests to the bot, played locally: for the demo, the benchmarks and tests.

`SlackRequests` builds what Slack sends to `/slack/events`, signed with the app's signing secret as Slack signs
it (HMAC-SHA256 over `v0:{timestamp}:{body}`): slash commands, events (mentions) and button presses. The other
side of the conversation, Slack's Web API and response_url endpoints, is `bot.demo.standin.SlackStandIn`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode

Request = tuple[bytes, dict[str, str]]


class SlackRequests:
    """Signed requests as Slack sends them to `/slack/events` (HMAC-SHA256 over `v0:{ts}:{body}`)."""

    def __init__(
        self,
        signing_secret: str,
        *,
        team_id: str = "T0STANDIN",
        clock: Callable[[], float] = time.time,
        enterprise_id: str | None = None,  # the Enterprise Grid org of `team_id`, named in event envelopes
        on_trigger: Callable[[str], None] | None = None,
    ) -> None:
        self._secret = signing_secret.encode()
        self.team_id = team_id
        self.enterprise_id = enterprise_id
        self._clock = clock
        self._ids = itertools.count(1)
        # Told of every trigger_id these requests carry, as Slack's side knows what it issued (the stand-in).
        self._on_trigger = on_trigger or (lambda _: None)
        self.last_trigger = ""

    def _trigger(self) -> str:
        self.last_trigger = f"{next(self._ids)}.{int(self._clock())}.{next(self._ids):08x}"
        self._on_trigger(self.last_trigger)
        return self.last_trigger

    def sign(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(self._clock()) if timestamp is None else timestamp)
        digest = hmac.new(self._secret, b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}

    def _form(self, fields: dict[str, str]) -> Request:
        body = urlencode(fields).encode()
        return body, {"Content-Type": "application/x-www-form-urlencoded", **self.sign(body)}

    def command(
        self,
        text: str,
        *,
        response_url: str,
        user_id: str = "U0ALICE",
        channel_id: str = "C0INCIDENT",
        command: str = "/device-alerts",
        **extra: str,
    ) -> Request:
        """A slash command; `extra` adds payload fields (`enterprise_id`, `user_team_id`, …)."""
        return self._form(
            {
                "command": command,
                "text": text,
                "response_url": response_url,
                "trigger_id": self._trigger(),
                "user_id": user_id,
                "user_name": "alice",
                "channel_id": channel_id,
                "channel_name": "incident",
                "team_id": self.team_id,
                "api_app_id": "A0DEVALERTS",
                **extra,
            }
        )

    def event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        retry_num: int | None = None,
        shared_channel: bool = False,
    ) -> Request:
        """An Events API envelope; `shared_channel` marks a Slack Connect channel (`is_ext_shared_channel`)."""
        # From a Grid org, Slack names the org beside the workspace, in the envelope and in `authorizations`.
        grid = {"enterprise_id": self.enterprise_id, "is_enterprise_install": False} if self.enterprise_id else {}
        envelope = {
            "type": "event_callback",
            "token": "unused",
            "team_id": self.team_id,
            "api_app_id": "A0DEVALERTS",
            "event": event,
            "event_id": event_id or f"Ev{next(self._ids):08d}",
            "event_time": int(self._clock()),
            "authorizations": [{"team_id": self.team_id, "user_id": "U0DEVALERTS", "is_bot": True, **grid}],
            "is_ext_shared_channel": shared_channel,
            **({"enterprise_id": self.enterprise_id} if self.enterprise_id else {}),
        }
        body = json.dumps(envelope).encode()
        headers = {"Content-Type": "application/json", **self.sign(body)}
        if retry_num is not None:
            headers |= {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        return body, headers

    def mention(self, text: str, *, channel: str = "C0INCIDENT", ts: str | None = None, **extra: Any) -> dict[str, Any]:
        """An `app_mention` event body; `text` is what follows the bot's mention."""
        ts = ts or f"{int(self._clock())}.{next(self._ids):06d}"
        return {"type": "app_mention", "user": "U0ALICE", "text": f"<@U0DEVALERTS> {text}", "channel": channel,
                "ts": ts, "event_ts": ts, **extra}  # fmt: skip

    def block_action(
        self,
        action_id: str,
        value: str,
        *,
        response_url: str,
        channel: str = "C0INCIDENT",
        user_id: str = "U0ALICE",
        message_ts: str | None = None,
        user_team: str | None = None,
    ) -> Request:
        """A button press; `message_ts` is the ts of the message that carries the button, when it has one.

        `user_team` is the presser's own workspace when it is not this one (a Slack Connect guest).
        """
        payload = {
            "type": "block_actions",
            "team": {"id": self.team_id, "domain": "standin"},
            "user": {"id": user_id, "username": "alice", "team_id": user_team or self.team_id},
            "api_app_id": "A0DEVALERTS",
            "channel": {"id": channel, "name": "incident"},
            "container": {"type": "message", "channel_id": channel, "is_ephemeral": False}
            | ({"message_ts": message_ts} if message_ts else {}),
            "trigger_id": self._trigger(),
            "response_url": response_url,
            "actions": [
                {"type": "button", "action_id": action_id, "block_id": "b", "value": value, "action_ts": "1.2"}
            ],
        }
        return self._form({"payload": json.dumps(payload)})

    def overflow_action(self, action_id: str, option_value: str, *, response_url: str, **where: Any) -> Request:
        """A choice in an overflow menu: like a button press, the chosen option in `selected_option`."""
        body, _ = self.block_action(action_id, "", response_url=response_url, **where)
        payload = json.loads(parse_qs(body.decode())["payload"][0])
        payload["actions"] = [{"type": "overflow", "action_id": action_id, "block_id": "b", "action_ts": "1.2",
                               "selected_option": {"text": {"type": "plain_text", "text": "x"},
                                                   "value": option_value}}]  # fmt: skip
        return self._form({"payload": json.dumps(payload)})

    def view_submission(
        self, view: dict[str, Any], values: dict[str, Any], *, user_id: str = "U0ALICE", view_id: str = "V1"
    ) -> Request:
        """A modal submitted: the view as opened (its callback_id and private_metadata) with the inputs' state."""
        payload = {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": "standin"},
            "user": {"id": user_id, "username": "alice", "team_id": self.team_id},
            "api_app_id": "A0DEVALERTS",
            "trigger_id": self._trigger(),
            "view": {**view, "id": view_id, "state": {"values": values}},
            "response_urls": [],
        }
        return self._form({"payload": json.dumps(payload)})
