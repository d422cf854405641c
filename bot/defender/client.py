"""HTTP client for the Defender API: one pooled `httpx.Client`, typed results, typed errors.

Every request (first attempt, retry or extra page) passes the rate budget first, so the budget counts
exactly what Microsoft counts. A 429 is never retried early: the client remembers `Retry-After` and
refuses further calls to that API until it has passed, because retrying early extends the throttle.
"""

from __future__ import annotations

import contextlib
import contextvars
import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, NoReturn, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx

from bot.defender.auth import TokenProvider
from bot.defender.errors import (
    AuthError,
    BadResponse,
    DefenderUnavailable,
    DeviceNotFound,
    InvalidDeviceReference,
    PermissionDenied,
    Throttled,
)
from bot.defender.limits import Api, Priority, SharedThrottle
from bot.defender.models import Alert, Machine, format_timestamp, parse_alert, parse_machine
from bot.defender.refs import RefKind, odata_literal, parse_device_ref, path_segment
from bot.telemetry.metrics import DEFENDER_REQUESTS, defender_outcome

log = logging.getLogger(__name__)

_T = TypeVar("_T")

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=20.0, write=10.0, pool=5.0)
DEFAULT_RETRY_AFTER = 60.0
MAX_RETRY_AFTER = 3600.0


class RequestCount:
    """How many requests Defender received on behalf of one piece of work (see `counting_requests`)."""

    __slots__ = ("requests",)

    def __init__(self) -> None:
        self.requests = 0


_counter: contextvars.ContextVar[RequestCount | None] = contextvars.ContextVar("defender_requests", default=None)


@contextlib.contextmanager
def counting_requests() -> Iterator[RequestCount]:
    """Count the requests this thread's work sends, for the audit trail's "Defender call made" field.

    A lookup that waited for another thread's call (single flight) or was served from cache counts 0.
    """
    count = RequestCount()
    token = _counter.set(count)
    try:
        yield count
    finally:
        _counter.reset(token)


class CallGate(Protocol):
    """Consulted before every request; raises to stop a call that must not be made."""

    def acquire(self, api: Api, priority: Priority = ...) -> None: ...


class _Unmetered:
    def acquire(self, api: Api, priority: Priority = Priority.INTERACTIVE) -> None:
        """No budget: every call may go."""


def _retry_after_seconds(value: str | None, now: float) -> float:
    """Parse `Retry-After` (seconds or an HTTP date); a missing or odd value means a cautious minute."""
    if value:
        value = value.strip()
        if value.isdigit():
            return min(max(float(value), 1.0), MAX_RETRY_AFTER)
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return min(max(moment.timestamp() - now, 1.0), MAX_RETRY_AFTER)
    return DEFAULT_RETRY_AFTER


class DefenderClient:
    """Typed access to the few Defender endpoints the bot uses.

    `transport` swaps the network for another httpx transport (the built-in simulator, tests).
    """

    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider,
        *,
        gate: CallGate | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_attempts: int = 3,
        retry_time_budget: float = 15.0,
        backoff_base: float = 0.5,
        max_pages: int = 50,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._base = urlsplit(base_url.rstrip("/"))
        self._tokens = tokens
        self._gate: CallGate = gate or _Unmetered()
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            transport=transport,
            timeout=timeout,
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            headers={"Accept": "application/json", "User-Agent": "device-alerts"},
            follow_redirects=False,
        )
        self._max_attempts = max_attempts
        self._retry_time_budget = retry_time_budget
        self._backoff_base = backoff_base
        self._max_pages = max_pages
        self._clock = clock
        self._sleep = sleep
        self._blocked_until: dict[Api, float] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DefenderClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # Public API -----------------------------------------------------------------------------

    def get_device_alerts(
        self, machine_id: str, odata_filter: str | None = None, *, priority: Priority = Priority.INTERACTIVE
    ) -> list[Alert]:
        """All alerts of one device (`GET /api/machines/{id}/alerts`), following pages."""
        ref = parse_device_ref(machine_id)
        if ref.kind is not RefKind.MACHINE_ID:
            raise InvalidDeviceReference("alerts are looked up by machine id (40 hex characters)")
        params = {"$filter": odata_filter} if odata_filter else None
        path = f"/api/machines/{path_segment(ref.value)}/alerts"
        records = self._get_collection(Api.MACHINE_ALERTS, path, params, priority, not_found=ref.value)
        return self._parse_all(records, parse_alert)

    def get_machine(self, id_or_name: str, *, priority: Priority = Priority.INTERACTIVE) -> Machine:
        """One device by machine id or computer name (`GET /api/machines/{idOrName}`)."""
        ref = parse_device_ref(id_or_name)
        body = self._get_json(Api.MACHINE, f"/api/machines/{path_segment(ref.value)}", None, priority, ref.value)
        return parse_machine(body)

    def find_machines(
        self, hostname: str, *, prefix: bool = False, priority: Priority = Priority.INTERACTIVE
    ) -> list[Machine]:
        """Devices whose computerDnsName equals (or, with `prefix`, starts with) `hostname`."""
        ref = parse_device_ref(hostname)
        literal = odata_literal(ref.value)
        odata = f"startswith(computerDnsName,{literal})" if prefix else f"computerDnsName eq {literal}"
        records = self._get_collection(Api.MACHINES, "/api/machines", {"$filter": odata}, priority, None)
        return self._parse_all(records, parse_machine)

    def list_alerts_updated_since(
        self, since: datetime, *, top: int = 10_000, priority: Priority = Priority.BACKGROUND
    ) -> list[Alert]:
        """Every alert in the tenant updated at or after `since` (one call covers all devices)."""
        params = {"$filter": f"lastUpdateTime ge {format_timestamp(since)}", "$top": str(top)}
        records = self._get_collection(Api.ALERTS, "/api/alerts", params, priority, None)
        return self._parse_all(records, parse_alert)

    # Plumbing -------------------------------------------------------------------------------

    @staticmethod
    def _parse_all(records: list[Any], parse: Callable[[object], _T]) -> list[_T]:
        parsed: list[_T] = []
        for record in records:
            try:
                parsed.append(parse(record))
            except BadResponse as exc:
                log.warning("skipped a record Defender sent: %s", exc)
        return parsed

    def _get_collection(
        self, api: Api, path: str, params: dict[str, str] | None, priority: Priority, not_found: str | None
    ) -> list[Any]:
        """GET an OData collection and follow `@odata.nextLink` (same host only, bounded)."""
        records: list[Any] = []
        url: str = path
        for _ in range(self._max_pages):
            body = self._get_json(api, url, params, priority, not_found)
            page = body.get("value")
            if not isinstance(page, list):
                raise BadResponse("Defender's answer has no 'value' list")
            records.extend(page)
            next_link = body.get("@odata.nextLink")
            if not next_link:
                return records
            if not self._same_origin(next_link):
                log.warning("ignored an @odata.nextLink that leaves the API host (%d records kept)", len(records))
                return records
            url, params = next_link, None
        log.warning("stopped following @odata.nextLink after %d pages (%d records kept)", self._max_pages, len(records))
        return records

    def _same_origin(self, link: object) -> bool:
        if not isinstance(link, str):
            return False
        parts = urlsplit(link)
        return (parts.scheme, parts.netloc) == (self._base.scheme, self._base.netloc)

    def _get_json(
        self, api: Api, url: str, params: dict[str, str] | None, priority: Priority, not_found: str | None
    ) -> dict[str, Any]:
        response = self._send(api, url, params, priority)
        if response.status_code == 200:
            try:
                body = response.json()
            except ValueError:
                raise BadResponse("Defender's answer is not valid JSON") from None
            except RecursionError:  # nesting deeper than the parser goes is no answer either
                raise BadResponse("Defender's answer is nested too deeply") from None
            if not isinstance(body, dict):
                raise BadResponse("Defender's answer is not a JSON object")
            return body
        self._raise_for(api, response, not_found)

    def _send(self, api: Api, url: str, params: dict[str, str] | None, priority: Priority) -> httpx.Response:
        """One logical GET: budgeted attempts, backoff on 5xx and network errors, one token refresh on 401."""
        started = self._clock()
        refreshed = False
        attempt = 0
        while True:
            self._check_block(api)
            headers = {"Authorization": f"Bearer {self._tokens.token()}"}
            self._gate.acquire(api, priority)
            attempt += 1
            count = _counter.get()
            if count is not None:
                count.requests += 1
            failure: str
            try:
                response = self._http.get(url, params=params, headers=headers)
            except httpx.TransportError as exc:
                DEFENDER_REQUESTS.labels(api.value, defender_outcome(None)).inc()
                failure = f"{type(exc).__name__} talking to Defender"
            else:
                DEFENDER_REQUESTS.labels(api.value, defender_outcome(response.status_code)).inc()
                if response.status_code == 401 and not refreshed:
                    refreshed = True
                    attempt -= 1  # a token refresh is not a failure of Defender's
                    self._tokens.invalidate()
                    continue
                if response.status_code < 500:
                    return response
                failure = f"Defender answered {response.status_code}"
            delay = self._backoff_base * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            if attempt >= self._max_attempts or self._clock() - started + delay > self._retry_time_budget:
                raise DefenderUnavailable(f"{failure} (gave up after {attempt} attempts)")
            log.info("%s; retrying in %.1f s", failure, delay)
            self._sleep(delay)

    def _check_block(self, api: Api) -> None:
        with self._lock:
            remaining = self._blocked_until.get(api, 0.0) - self._clock()
        if remaining <= 0 and isinstance(self._gate, SharedThrottle):
            remaining = self._gate.blocked_for(api)  # a 429 another process received
        if remaining > 0:
            raise Throttled(remaining)

    def _raise_for(self, api: Api, response: httpx.Response, not_found: str | None) -> NoReturn:
        code, message, target = _error_fields(response)
        status = response.status_code
        # A 404 is an everyday answer (a mistyped name, the hostname fallback); anything else is worth a warning.
        level = logging.INFO if status == 404 else logging.WARNING
        log.log(level, "Defender %s answered %d %s (target %s)", api.value, status, code or "", target or "-")
        if status == 429:
            wait = _retry_after_seconds(response.headers.get("Retry-After"), time.time())
            with self._lock:
                self._blocked_until[api] = self._clock() + wait
            if isinstance(self._gate, SharedThrottle):
                self._gate.block(api, wait)
            raise Throttled(wait, target=target)
        if status == 401:
            raise AuthError(
                "Defender rejected the app's token",
                hint="the token does not fit this API: check DEFENDER_CLOUD, DEFENDER_SCOPE and admin consent",
                target=target,
            )
        if status == 403:
            raise PermissionDenied(message or "the app lacks a Defender permission", target=target)
        if status == 404 and not_found is not None:
            raise DeviceNotFound(not_found, target=target)
        raise BadResponse(f"Defender answered {status} {code or ''}".strip(), target=target)


def _error_fields(response: httpx.Response) -> tuple[str | None, str | None, str | None]:
    """(code, message, target) from Defender's error envelope, tolerating any other body."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None, None, None
    if not isinstance(error, dict):
        return None, None, None

    def field(key: str) -> str | None:
        value = error.get(key)
        return str(value)[:500] if value is not None else None

    return field("code"), field("message"), field("target")
