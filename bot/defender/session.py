"""The HTTP machinery both Microsoft clients share: Defender for Endpoint (`client`) and Microsoft Graph (`graph`).

One pooled `httpx.Client` per session. Every request (first attempt, retry or extra page) passes the rate
budget first, so the budget counts exactly what Microsoft counts. 5xx answers and network errors are retried
with jittered backoff; a 401 drops the token and is retried once. A 429 is never retried early: the session
remembers `Retry-After` per API (and in the `SharedThrottle`, for every process) and refuses further calls to
that API until it has passed, because retrying early extends the throttle. `@odata.nextLink` is followed on
the API's own host only, for a bounded number of pages. Each client maps the remaining error answers to the
error taxonomy itself (`ErrorMapper`), because what an error means differs between the two services.
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
from typing import Any, NamedTuple, NoReturn, Protocol, Self, TypedDict, TypeVar
from urllib.parse import urlsplit

import httpx

from bot.defender.auth import TokenProvider
from bot.defender.errors import BadResponse, DefenderError, DefenderUnavailable, Throttled
from bot.defender.limits import Api, Priority, SharedThrottle
from bot.defender.skew import ClockSkew
from bot.telemetry.metrics import DEFENDER_REQUESTS, defender_outcome

log = logging.getLogger(__name__)

_T = TypeVar("_T")

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=20.0, write=10.0, pool=5.0)
DEFAULT_RETRY_AFTER = 60.0
# An idle connection stays open this long (httpx's default is 5 s): a lookup a minute after the last one reuses
# it instead of paying a new TCP and TLS handshake on top of its round trip. Azure's load balancers drop idle
# connections after 4 minutes: httpcore notices a pooled connection the far end closed and opens another, and a
# request that races the close fails as a network error, which is retried.
KEEPALIVE_SECONDS = 120.0
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


class ErrorReply(NamedTuple):
    """An error answer other than 429, as the client's `ErrorMapper` sees it."""

    api: Api
    status: int
    code: str | None
    message: str | None
    target: str | None  # the service's tracking id: Defender's `target`, Graph's `innerError.request-id`


# Turns an error answer (and the device reference a 404 means, if any) into the exception to raise.
ErrorMapper = Callable[[ErrorReply, str | None], DefenderError]


class Collection(NamedTuple):
    """The records of every page read; `complete` is False when the page cap or a foreign nextLink stopped it."""

    records: list[Any]
    complete: bool


def parse_all(records: list[Any], parse: Callable[[object], _T], service: str = "Defender") -> list[_T]:
    """Parse every record; one the parser refuses (`BadResponse`) is logged and skipped, never fatal."""
    parsed: list[_T] = []
    for record in records:
        try:
            parsed.append(parse(record))
        except BadResponse as exc:
            log.warning("skipped a record %s sent: %s", service, exc)
    return parsed


def retry_after_seconds(value: str | None, now: float) -> float:
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


class SessionOptions(TypedDict, total=False):
    """What a client may tune of its `ApiSession` (every client takes these keywords and hands them on)."""

    gate: CallGate | None
    transport: httpx.BaseTransport | None
    timeout: httpx.Timeout
    max_attempts: int
    retry_time_budget: float
    backoff_base: float
    max_pages: int
    clock: Callable[[], float]
    sleep: Callable[[float], None]


class ApiSession:
    """Budgeted, retried, throttle-aware JSON requests to one Microsoft API host.

    `service` names the API in messages and logs ("Defender", "Microsoft Graph"); `errors` maps error answers.
    `transport` swaps the network for another httpx transport (the built-in simulator, tests).
    """

    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider,
        *,
        service: str,
        errors: ErrorMapper,
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
        self.service = service
        self.tokens = tokens
        self._base = urlsplit(base_url.rstrip("/"))
        self._errors = errors
        self._gate: CallGate = gate or _Unmetered()
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            transport=transport,
            timeout=timeout,
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10, keepalive_expiry=KEEPALIVE_SECONDS),
            headers={"Accept": "application/json", "User-Agent": "device-alerts"},
            follow_redirects=False,
        )
        self._max_attempts = max_attempts
        self._retry_time_budget = retry_time_budget
        self._backoff_base = backoff_base
        self.max_pages = max_pages
        self._clock = clock
        self._sleep = sleep
        self._blocked_until: dict[Api, float] = {}
        self.clock_skew = ClockSkew(service)  # this host's clock against the API's `Date` header
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def open_connection(self) -> None:
        """Open the pooled connection (TCP and TLS) ahead of the first request, at start-up, so that a person's
        first lookup does not wait for the handshake. The request carries no token, so the API answers 401 and
        there is no call of the app's to count (nor budget to spend); any answer will do, and a failure is left to
        the first real request, which connects again."""
        try:
            self._http.get("")
        except httpx.HTTPError as exc:
            log.info("no connection to %s ahead of use: %s", self.service, type(exc).__name__)

    # Requests -------------------------------------------------------------------------------

    def get_json(
        self,
        api: Api,
        url: str,
        params: dict[str, str] | None,
        priority: Priority,
        not_found: str | None = None,
    ) -> dict[str, Any]:
        """GET one JSON object; error answers raise (a 404 as `not_found` means, through the mapper)."""
        return self._json(api, self._send(api, "GET", url, params, None, priority), not_found)

    def post_json(
        self, api: Api, url: str, body: dict[str, Any], priority: Priority, not_found: str | None = None
    ) -> dict[str, Any]:
        """POST a JSON body and read one JSON object back."""
        return self._json(api, self._send(api, "POST", url, None, body, priority), not_found)

    def write_json(
        self, api: Api, method: str, url: str, body: dict[str, Any], priority: Priority, not_found: str | None = None
    ) -> dict[str, Any]:
        """PATCH or POST a write, attempted once: a retry after an unanswered write could make it twice."""
        return self._json(api, self._send(api, method, url, None, body, priority, once=True), not_found)

    def get_collection(
        self, api: Api, path: str, params: dict[str, str] | None, priority: Priority, not_found: str | None = None
    ) -> Collection:
        """GET an OData collection and follow `@odata.nextLink` (same host only, at most `max_pages` pages)."""
        records: list[Any] = []
        complete = self.read_pages(api, path, params, priority, records.extend, not_found)
        return Collection(records, complete)

    def read_pages(
        self,
        api: Api,
        path: str,
        params: dict[str, str] | None,
        priority: Priority,
        each_page: Callable[[list[Any]], object],
        not_found: str | None = None,
    ) -> bool:
        """Hand each page's records to `each_page` as it arrives (a large read need not hold every page at once).

        Follows `@odata.nextLink` on the same host only, at most `max_pages` pages; False when that stopped it.
        """
        url: str = path
        records = 0
        for _ in range(self.max_pages):
            body = self.get_json(api, url, params, priority, not_found)
            page = body.get("value")
            if not isinstance(page, list):
                raise BadResponse(f"{self.service}'s answer has no 'value' list")
            each_page(page)
            records += len(page)
            next_link = body.get("@odata.nextLink")
            if not next_link:
                return True
            if not self._same_origin(next_link):
                log.warning("ignored an @odata.nextLink that leaves the API host (%d records kept)", records)
                return False
            url, params = next_link, None
        log.warning("stopped following @odata.nextLink after %d pages (%d records kept)", self.max_pages, records)
        return False

    # Plumbing -------------------------------------------------------------------------------

    def _same_origin(self, link: object) -> bool:
        if not isinstance(link, str):
            return False
        parts = urlsplit(link)
        return (parts.scheme, parts.netloc) == (self._base.scheme, self._base.netloc)

    def _json(self, api: Api, response: httpx.Response, not_found: str | None) -> dict[str, Any]:
        if response.status_code == 200:
            try:
                body = response.json()
            except ValueError:
                raise BadResponse(f"{self.service}'s answer is not valid JSON") from None
            except RecursionError:  # nesting deeper than the parser goes is no answer either
                raise BadResponse(f"{self.service}'s answer is nested too deeply") from None
            if not isinstance(body, dict):
                raise BadResponse(f"{self.service}'s answer is not a JSON object")
            return body
        self._raise_for(api, response, not_found)

    def _send(
        self,
        api: Api,
        method: str,
        url: str,
        params: dict[str, str] | None,
        body: dict[str, Any] | None,
        priority: Priority,
        *,
        once: bool = False,
    ) -> httpx.Response:
        """One logical request: budgeted attempts, backoff on 5xx and network errors, one token refresh on 401."""
        started = self._clock()
        refreshed = False
        attempt = 0
        while True:
            self._check_block(api)
            headers = {"Authorization": f"Bearer {self.tokens.token()}"}
            self._gate.acquire(api, priority)
            attempt += 1
            count = _counter.get()
            if count is not None:
                count.requests += 1
            failure: str
            try:
                response = self._http.request(method, url, params=params, json=body, headers=headers)
            except httpx.TransportError as exc:
                DEFENDER_REQUESTS.labels(api.value, defender_outcome(None)).inc()
                failure = f"{type(exc).__name__} talking to {self.service}"
            else:
                DEFENDER_REQUESTS.labels(api.value, defender_outcome(response.status_code)).inc()
                self.clock_skew.note(response)
                if response.status_code == 401 and not refreshed:
                    refreshed = True
                    attempt -= 1  # a token refresh is not a failure of the service's
                    self.tokens.invalidate()
                    continue
                if response.status_code < 500:
                    return response
                failure = f"{self.service} answered {response.status_code}"
            delay = self._backoff_base * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            if once or attempt >= self._max_attempts or self._clock() - started + delay > self._retry_time_budget:
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
        code, message, target = error_fields(response)
        status = response.status_code
        # A 404 is an everyday answer (a mistyped name, the hostname fallback); anything else is worth a warning.
        level = logging.INFO if status == 404 else logging.WARNING
        log.log(level, "%s %s answered %d %s (target %s)", self.service, api.value, status, code or "", target or "-")
        if status == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After"), time.time())
            with self._lock:
                self._blocked_until[api] = self._clock() + wait
            if isinstance(self._gate, SharedThrottle):
                self._gate.block(api, wait)
            raise Throttled(wait, target=target)
        raise self._errors(ErrorReply(api, status, code, message, target), not_found)


def error_fields(response: httpx.Response) -> tuple[str | None, str | None, str | None]:
    """(code, message, tracking id) from the error envelope, tolerating any other body.

    Defender puts its tracking id in `error.target`; Microsoft Graph in `error.innerError["request-id"]`.
    """
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None, None, None
    if not isinstance(error, dict):
        return None, None, None

    def text(value: object) -> str | None:
        return str(value)[:500] if value is not None else None

    inner = error.get("innerError") or error.get("innererror")
    request_id = inner.get("request-id") if isinstance(inner, dict) else None
    return text(error.get("code")), text(error.get("message")), text(error.get("target") or request_id)


class SessionClient:
    """What every API client shares: one `ApiSession`, opened early, closed with the client."""

    _session: ApiSession

    def close(self) -> None:
        self._session.close()

    def open_connection(self) -> None:
        """Connect to the API ahead of the first lookup (`ApiSession.open_connection`)."""
        self._session.open_connection()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
