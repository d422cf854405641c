"""Slack's side of the conversation, played locally: for the demo and for tests.

- `SlackStandIn` is a real HTTP server on 127.0.0.1 standing in for Slack's Web API (`auth.test`,
  `chat.postMessage`, `chat.postEphemeral`, `chat.update`, `conversations.replies`, `conversations.history`,
  `usergroups.users.list`, `conversations.join`, `views.open`, `users.info`, `apps.connections.open`) and for
  `response_url` endpoints. It records what the bot posts, rejects messages that break Block Kit limits as Slack
  would (`invalid_blocks`), and can fail on purpose (429 with Retry-After, 5xx, an expired response_url).
  `SlackStandIn.observe` sees every payload.
- As in Slack, `replace_original` through a slash command's response_url cannot replace the message the ack
  showed: it replaces only a message sent earlier through that response_url, else the answer is a new message
  (`Posted.replaced` says which). A button's response_url (`response_url(name, for_action=True)`) replaces the
  message the button is on.
- Channel membership as Slack has it: a channel id is a public channel unless listed in `private`, and the bot is
  a member only where it joined (`conversations.join`, public channels only) or was invited (`joined`). It posts
  in any public channel (`chat:write.public`) but reads history and threads (`conversations.history`/`replies`)
  only as a member (`not_in_channel` otherwise); a private channel it is not in is `channel_not_found`. DMs
  (`D…`) are the bot's own. Message metadata comes back only with `include_all_metadata`.
- `views.open` is as strict as Slack's: a trigger_id opens one view, within 3 s of its interaction
  (`invalid_trigger_id`, `expired_trigger_id`), and a view over the modal limits is `invalid_arguments`;
  `users.info` shows the email only while the token has `users:read.email`.

The signed requests Slack sends to the bot are built by `bot.demo.slack_requests.SlackRequests`.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs

from bot.demo.standin_rules import ChannelRules, ModalRules, listed
from bot.slack.blockkit import Message, violations

RESPONSE_PATH = "/response/"
API_PATH = "/api/"
PayloadObserver = Callable[[str, dict[str, Any]], None]  # (Web API method or "response_url <name>", payload)


@dataclass(frozen=True, slots=True)
class Posted:
    """One message the bot sent: through `chat.postMessage` (target = channel) or a response_url (target = its name)."""

    via: str
    target: str
    payload: dict[str, Any]
    replaced: bool = False  # through a response_url: it took the place of an earlier message (else it is new)

    @property
    def message(self) -> Message:
        return Message(str(self.payload.get("text", "")), list(self.payload.get("blocks") or []))


@dataclass
class _Fault:
    status: int
    error: str | None
    retry_after: int | None


@dataclass
class _State:
    posts: list[Posted] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    faults: dict[str, deque[_Fault]] = field(default_factory=dict)
    expired: set[str] = field(default_factory=set)
    action_urls: set[str] = field(default_factory=set)  # response_urls of buttons: they can replace their message
    answered_urls: set[str] = field(default_factory=set)  # response_urls a message was sent through
    held: dict[str, threading.Event] = field(default_factory=dict)  # Web API methods answered only once released
    latency: dict[str, float] = field(default_factory=dict)  # seconds before each answer to a Web API method


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a bot process killed mid-request) is not the stand-in's error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class SlackStandIn:
    _observers: ClassVar[list[PayloadObserver]] = []  # of every stand-in in this process: `observe`

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-FAKESECRET-standin",  # noqa: S107 - the stand-in's own fake token
        app_token: str = "xapp-FAKESECRET-standin",  # noqa: S107
        enterprise_id: str | None = None,  # an Enterprise Grid org the workspace belongs to (`auth.test`)
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.enterprise_id = enterprise_id
        # User-group id -> member ids, for `usergroups.users.list`; tests may change it at any time.
        self.usergroups: dict[str, set[str]] = {}
        # Channel membership and modals, as Slack has them (tests may change their state: `joined`, `scopes`, …).
        self.channels = ChannelRules()
        self.modals = ModalRules()
        self._state = _State()
        self._changed = threading.Condition()
        self._ts = itertools.count(1)
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="slack-standin")
        self._thread.start()

    # Addresses -----------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        """What SLACK_API_URL should be for the bot to talk to this stand-in."""
        return self.base_url + API_PATH

    def response_url(self, name: str, *, for_action: bool = False) -> str:
        """A slash command's response_url, or with `for_action` a button's (which can replace its message)."""
        if for_action:
            with self._changed:
                self._state.action_urls.add(name)
        return f"{self.base_url}{RESPONSE_PATH}{name}"

    # What happened -------------------------------------------------------------------------------------

    @property
    def posts(self) -> list[Posted]:
        with self._changed:
            return list(self._state.posts)

    @property
    def calls(self) -> list[tuple[str, dict[str, Any]]]:
        """Every Web API call (method, arguments), including refused ones."""
        with self._changed:
            return list(self._state.calls)

    def wait_for_posts(self, count: int, timeout: float = 10.0) -> list[Posted]:
        """Block until at least `count` messages were posted; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._state.posts) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(self._state.posts)} of {count} posts arrived")
                self._changed.wait(remaining)
            return list(self._state.posts)

    def posts_to(self, target: str, at_least: int = 1, timeout: float = 5.0) -> list[Posted]:
        """The messages sent to `target` (a channel or response_url name), after waiting up to `timeout` for
        `at_least` of them: notices are sent off the request thread, so they may still be on their way."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [p for p in self._state.posts if p.target == target]
                remaining = deadline - time.monotonic()
                if len(found) >= at_least or remaining <= 0:
                    return found
                self._changed.wait(remaining)

    # Faults --------------------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Make the next `times` calls of `method` ('chat.postMessage', 'response_url', …) fail."""
        with self._changed:
            self._state.faults.setdefault(method, deque()).extend([_Fault(status, error, retry_after)] * times)

    def hold(self, method: str) -> None:
        """Keep every call of `method` waiting for its answer (a slow Slack) until `release(method)`."""
        with self._changed:
            self._state.held.setdefault(method, threading.Event()).clear()

    def slow(self, method: str, seconds: float) -> None:
        """Answer every call of `method` `seconds` late (a slow Slack, for benchmarks)."""
        with self._changed:
            self._state.latency[method] = seconds

    def release(self, method: str) -> None:
        with self._changed:
            held = self._state.held.pop(method, None)
        if held is not None:
            held.set()

    def expire(self, name: str) -> None:
        """A response_url that no longer works (Slack's expire after 30 minutes or 5 uses)."""
        with self._changed:
            self._state.expired.add(name)

    @classmethod
    def observe(cls, observer: PayloadObserver) -> Callable[[], None]:
        """From now on, show `observer` every Web API call and response_url body any stand-in receives, refused
        ones included (not those a `fail_next` fault answers). Returns the call that stops it."""
        cls._observers.append(observer)
        return lambda: cls._observers.remove(observer)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SlackStandIn:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # Serving -------------------------------------------------------------------------------------------

    def _take_fault(self, method: str) -> _Fault | None:
        with self._changed:
            queue = self._state.faults.get(method)
            return queue.popleft() if queue else None

    def _record(self, posted: Posted) -> None:
        with self._changed:
            self._state.posts.append(posted)
            self._changed.notify_all()

    def _answer_late(self, method: str) -> None:
        """A held or slow method (`hold`, `slow`): the caller waits as a slow Slack would make it."""
        with self._changed:
            held = self._state.held.get(method)
            latency = self._state.latency.get(method, 0.0)
        if held is not None:
            held.wait(timeout=60)
        time.sleep(latency)

    def _web_api(self, method: str, token: str, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        for observer in list(self._observers):
            observer(method, args)
        with self._changed:
            self._state.calls.append((method, args))
        self._answer_late(method)
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != expected:
            return 200, {"ok": False, "error": "invalid_auth"}
        if (refusal := self.channels.answer(method, str(args.get("channel", "")))) is not None:
            return 200, refusal
        if method in ("views.open", "users.info"):
            return 200, self.modals.answer(method, args)
        answer = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.update": self._update,
            "usergroups.users.list": self._usergroup,
            "conversations.replies": self._replies,
            "conversations.history": self._history,
        }.get(method)
        if answer is not None:
            return 200, answer(args)
        if method == "apps.connections.open":
            return 200, {"ok": False, "error": "stand_in_has_no_websocket"}
        return 200, {"ok": False, "error": "unknown_method"}

    def _auth_test(self, _: dict[str, Any]) -> dict[str, Any]:
        grid = {"enterprise_id": self.enterprise_id, "is_enterprise_install": False} if self.enterprise_id else {}
        return {"ok": True, "url": self.base_url + "/", "team": "Stand-in", "user": "device-alerts",
                "team_id": "T0STANDIN", "user_id": "U0DEVALERTS", "bot_id": "B0DEVALERTS", **grid}  # fmt: skip

    def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        problems = violations(Message(str(args.get("text", "")), list(args.get("blocks") or [])))
        if problems:
            return {"ok": False, "error": "invalid_blocks", "errors": problems}
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        self._record(Posted("chat.postMessage", str(args.get("channel", "")), {**args, "ts": ts}))
        return {"ok": True, "channel": args.get("channel"), "ts": ts}

    def _post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        self._record(Posted("chat.postEphemeral", str(args.get("channel", "")), {**args, "message_ts": ts}))
        return {"ok": True, "message_ts": ts}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        problems = violations(Message(str(args.get("text", "")), list(args.get("blocks") or [])))
        if problems:
            return {"ok": False, "error": "invalid_blocks", "errors": problems}
        if not any(p.payload.get("ts") == args.get("ts") for p in self.posts):
            return {"ok": False, "error": "message_not_found"}
        self._record(Posted("chat.update", str(args.get("channel", "")), dict(args)))
        return {"ok": True, "channel": args.get("channel"), "ts": args.get("ts")}

    def _usergroup(self, args: dict[str, Any]) -> dict[str, Any]:
        with self._changed:
            members = self.usergroups.get(str(args.get("usergroup", "")))
        if members is None:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": sorted(members)}

    def _replies(self, args: dict[str, Any]) -> dict[str, Any]:
        thread = str(args.get("ts", ""))
        messages = [
            listed(p.payload, args)
            for p in self.posts
            if p.via == "chat.postMessage" and thread in (p.payload.get("ts"), p.payload.get("thread_ts"))
        ]
        return {"ok": True, "messages": messages, "has_more": False}

    def _history(self, args: dict[str, Any]) -> dict[str, Any]:
        oldest = float(args.get("oldest") or 0)
        messages = [
            listed(p.payload, args)
            for p in reversed(self.posts)  # newest first, as Slack lists them
            if p.via == "chat.postMessage"
            and p.target == args.get("channel")
            and not p.payload.get("thread_ts")
            and float(p.payload["ts"]) >= oldest
        ]
        return {"ok": True, "messages": messages, "has_more": False}

    def issue_trigger(self, trigger_id: str) -> None:
        """Slack issued `trigger_id` for an interaction now (`SlackRequests(on_trigger=…)` calls this)."""
        self.modals.issue_trigger(trigger_id)

    def _respond(self, name: str, body: dict[str, Any]) -> tuple[int, str]:
        for observer in list(self._observers):
            observer(f"response_url {name}", body)
        with self._changed:
            expired = name in self._state.expired
        if expired:
            return 404, "expired_url"
        if violations(Message(str(body.get("text", "")), list(body.get("blocks") or []))):
            return 400, "invalid_blocks"
        with self._changed:
            replaceable = name in self._state.action_urls or name in self._state.answered_urls
            self._state.answered_urls.add(name)
        replacing = body.get("replace_original") in (True, "true")
        self._record(Posted("response_url", name, body, replaced=replacing and replaceable))
        return 200, "ok"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith(RESPONSE_PATH):
                    self._answer_response_url(self.path[len(RESPONSE_PATH) :], raw)
                elif self.path.startswith(API_PATH):
                    self._answer_web_api(self.path[len(API_PATH) :].split("?")[0], raw)
                else:
                    self._send(404, "text/plain", b"not found")

            def _answer_web_api(self, method: str, raw: bytes) -> None:
                fault = stand_in._take_fault(method)
                if fault is not None:
                    self._fault(fault)
                    return
                if "json" in (self.headers.get("Content-Type") or ""):
                    args = json.loads(raw or b"{}")
                else:
                    args = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                    for key in ("blocks", "view"):
                        if isinstance(args.get(key), str):
                            args[key] = json.loads(args[key])
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ") or str(args.get("token", ""))
                status, body = stand_in._web_api(method, token, args)
                self._send(status, "application/json", json.dumps(body).encode())

            def _answer_response_url(self, name: str, raw: bytes) -> None:
                fault = stand_in._take_fault("response_url")
                if fault is not None:
                    self._fault(fault)
                    return
                status, text = stand_in._respond(name, json.loads(raw or b"{}"))
                self._send(status, "text/plain", text.encode())

            def _fault(self, fault: _Fault) -> None:
                body = json.dumps({"ok": False, "error": fault.error or "fault"}).encode()
                extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                self._send(fault.status, "application/json", body, extra)

            def _send(self, status: int, kind: str, body: bytes, extra: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: the stand-in's record is `posts` and `calls`."""

        return Handler
