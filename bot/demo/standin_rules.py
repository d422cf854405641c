"""Rules real Slack applies that the stand-in must apply too: channel membership and modals.

Each class holds its own state under its own lock; `SlackStandIn` exposes that state to tests
(`standin.channels.joined`, `standin.modals.scopes`, …) and asks these classes for Slack's answer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from bot.slack.modals import view_violations

TRIGGER_LIFETIME = 3.0  # seconds a trigger_id may open a view after the interaction
_READS = ("conversations.replies", "conversations.history")


class ChannelRules:
    """A channel id is public unless listed in `private`; the bot is a member only where it joined
    (`conversations.join`, public channels only) or was invited (a test adds it to `joined`). DMs are its own."""

    def __init__(self) -> None:
        self.private: set[str] = set()
        self.joined: set[str] = set()
        self._lock = threading.Lock()

    def answer(self, method: str, channel: str) -> dict[str, Any] | None:
        """`conversations.join`'s answer, or Slack's refusal of a call the bot may not make in `channel`.

        Posting needs membership only in private channels (`chat:write.public`); reading always does.
        """
        if method == "conversations.join":
            return self._join(channel)
        if method not in ("chat.postMessage", *_READS):
            return None
        with self._lock:
            if channel.startswith("D") or channel in self.joined:
                return None
            private = channel in self.private
        if private:
            return {"ok": False, "error": "channel_not_found"}  # the bot cannot see a private channel it is not in
        return {"ok": False, "error": "not_in_channel"} if method in _READS else None

    def _join(self, channel: str) -> dict[str, Any]:
        with self._lock:
            if channel.startswith("D"):
                return {"ok": False, "error": "method_not_supported_for_channel_type"}
            if channel in self.private:  # invite only
                error = "method_not_supported_for_channel_type" if channel in self.joined else "channel_not_found"
                return {"ok": False, "error": error}
            already = channel in self.joined
            self.joined.add(channel)
        answer: dict[str, Any] = {"ok": True, "channel": {"id": channel, "is_member": True, "is_private": False}}
        if already:
            answer["warning"] = "already_in_channel"
        return answer


def listed(payload: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    """A message as history and replies list it: metadata only when asked for with include_all_metadata."""
    message = {"ts": payload["ts"], "text": payload.get("text", "")}
    if str(args.get("include_all_metadata", "")).lower() in ("1", "true") and payload.get("metadata"):
        message["metadata"] = payload["metadata"]
    return message


class ModalRules:
    """`views.open` as strict as Slack's: a trigger_id opens one view, within 3 s of its interaction
    (`invalid_trigger_id`, `expired_trigger_id`), and a view over the modal limits is `invalid_arguments`;
    `users.info` shows the email only while the token has `users:read.email`."""

    def __init__(self) -> None:
        self.clock: Callable[[], float] = time.monotonic
        self.triggers: dict[str, float] = {}  # trigger id -> when Slack issued it
        self.used_triggers: set[str] = set()
        self.views: list[dict[str, Any]] = []
        self.users: dict[str, dict[str, Any]] = {}
        self.scopes = {"users:read", "users:read.email"}  # granted to the bot token
        self._lock = threading.Lock()

    def issue_trigger(self, trigger_id: str) -> None:
        with self._lock:
            self.triggers[trigger_id] = self.clock()

    def answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        return self._user_info(str(args.get("user", ""))) if method == "users.info" else self._open_view(args)

    def _open_view(self, args: dict[str, Any]) -> dict[str, Any]:
        view = args.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        trigger = str(args.get("trigger_id", ""))
        with self._lock:
            issued = self.triggers.get(trigger)
            if issued is None or trigger in self.used_triggers:
                return {"ok": False, "error": "invalid_trigger_id"}
            if self.clock() - issued > TRIGGER_LIFETIME:
                return {"ok": False, "error": "expired_trigger_id"}
            if not isinstance(view, dict):
                return {"ok": False, "error": "invalid_arguments"}
            problems = view_violations(view)
            if problems:
                return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": problems}}
            self.used_triggers.add(trigger)
            opened = {**view, "id": f"V{len(self.views) + 1:08d}"}
            self.views.append({**opened, "trigger_id": trigger})
        return {"ok": True, "view": opened}

    def _user_info(self, user_id: str) -> dict[str, Any]:
        if "users:read" not in self.scopes:
            return {"ok": False, "error": "missing_scope", "needed": "users:read"}
        with self._lock:
            known = self.users.get(user_id)
        if known is None:
            return {"ok": False, "error": "user_not_found"}
        profile = {key: value for key, value in known.items() if key != "email" or "users:read.email" in self.scopes}
        return {"ok": True, "user": {"id": user_id, "name": known.get("name", user_id), "profile": profile}}
