"""How the simulator reads requests and answers errors: routes, OData `$filter` clauses, query parameters.

Defender's `$filter` grammar lives here; Graph's, for alerts_v2, in `graph`; the hunting KQL in `hunting`.
"""

from __future__ import annotations

import base64
import binascii
import json
import operator
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

import httpx

from bot.defender.simulator.dataset import MAX_TOP, Json

# A query Defender cannot read ($filter, $top, $skip) is ODataError; InvalidInput is for bad values in a body.
_ERROR_CODES = {400: "ODataError", 404: "ResourceNotFound"}
GRAPH_ALERTS = "graph-alerts"
GRAPH_HUNTING = "graph-hunting"
# The application permission each Graph route needs.
ROLES = {GRAPH_ALERTS: "SecurityAlert.Read.All", GRAPH_HUNTING: "ThreatHunting.Read.All"}
# Audiences Graph accepts: its hosts (the simulator's own included) and its application id.
GRAPH_HOSTS = {"graph.microsoft.com", "graph.microsoft.us", "dod-graph.microsoft.us"}
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"

# fmt: off
# Filter grammars. OData string literals double embedded quotes: 'o''brien' means o'brien.
_LITERAL = r"'((?:[^']|'')*)'"
_TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,7})?Z"
MACHINE_EQ = re.compile(rf"computerDnsName\s+eq\s+{_LITERAL}")
MACHINE_PREFIX = re.compile(rf"startswith\(\s*computerDnsName\s*,\s*{_LITERAL}\s*\)")
_ALERT_CLAUSE = re.compile(rf"(?P<field>\w+)\s+(?P<op>eq|ne|ge|gt|le|lt)\s+(?:{_LITERAL}|(?P<ts>{_TIMESTAMP}))")
_AND = re.compile(r"\s+and\s+")
_TEXT_FIELDS = {"status", "severity", "category", "detectionSource"}
_TIME_FIELDS = {"lastUpdateTime", "alertCreationTime"}
_TIMESTAMP_RE = re.compile(_TIMESTAMP)
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq, "ne": operator.ne, "ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt,
}
# fmt: on


class ApiError(Exception):
    """An error answer; raised anywhere in request handling and rendered as a Defender or a Graph error body."""

    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.explicit_code = code
        self.code = code or _default_code(status)
        self.headers = headers or {}

    def response(self, *, graph: bool = False) -> httpx.Response:
        if graph:  # Graph's envelope: the tracking id is innerError's request-id, the codes are Graph's own
            inner = {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "request-id": str(uuid.uuid4())}
            inner["client-request-id"] = inner["request-id"]
            code = self.explicit_code or _graph_code(self.status)
            body: Json = {"error": {"code": code, "message": str(self), "innerError": inner}}
        else:
            body = {"error": {"code": self.code, "message": str(self), "target": str(uuid.uuid4())}}
        return httpx.Response(self.status, json=body, headers=self.headers)


class Fault(NamedTuple):
    status: int
    code: str | None
    retry_after: int | None
    path: str | None = None  # only requests to this path get the fault


def _default_code(status: int) -> str:
    return _ERROR_CODES.get(status) or httpx.codes.get_reason_phrase(status).replace(" ", "") or "Error"


def _graph_code(status: int) -> str:
    if status == 401:
        return "InvalidAuthenticationToken"
    return httpx.codes.get_reason_phrase(status).replace(" ", "") or "Error"


def ticks(stamp: object) -> int | None:
    """Exact 100 ns ticks of a Defender timestamp (datetime would drop the 7th digit); None if unparsable."""
    if not isinstance(stamp, str) or not _TIMESTAMP_RE.fullmatch(stamp):
        return None
    whole, _, fraction = stamp[:-1].partition(".")
    seconds = int(datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp())  # the regex checked the form
    return seconds * 10_000_000 + int(fraction.ljust(7, "0"))


def literal(raw: str) -> str:
    return raw.replace("''", "'")


def _text_predicate(field: str, compare: Callable[[Any, Any], Any], value: str) -> Callable[[Json], bool]:
    return lambda alert: bool(compare(alert.get(field), value))


def _time_predicate(field: str, compare: Callable[[Any, Any], Any], limit: int) -> Callable[[Json], bool]:
    def check(alert: Json) -> bool:
        stamp = ticks(alert.get(field))
        return stamp is not None and bool(compare(stamp, limit))

    return check


def alert_predicates(expression: str) -> list[Callable[[Json], bool]]:
    """Parse `clause and clause ...` for alerts; anything outside the supported subset is ODataError."""
    predicates: list[Callable[[Json], bool]] = []
    position = 0
    while True:
        match = _ALERT_CLAUSE.match(expression, position)
        if not match:
            raise ApiError(400, f"Unsupported $filter expression: {expression}")
        field, op, text, stamp = match["field"], match["op"], match[3], match["ts"]
        limit = ticks(stamp)
        if field in _TEXT_FIELDS and text is not None and op in ("eq", "ne"):
            predicates.append(_text_predicate(field, _COMPARE[op], literal(text)))
        elif field in _TIME_FIELDS and limit is not None and op not in ("eq", "ne"):
            predicates.append(_time_predicate(field, _COMPARE[op], limit))
        else:
            raise ApiError(400, f"Unsupported $filter clause: {match.group(0)}")
        if match.end() == len(expression):
            return predicates
        separator = _AND.match(expression, match.end())
        if not separator:
            raise ApiError(400, f"Unsupported $filter expression: {expression}")
        position = separator.end()


def int_param(params: httpx.QueryParams, name: str, default: int, maximum: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", raw) or int(raw) > maximum:
        raise ApiError(400, f"Invalid OData query: {name} must be an integer between 0 and {maximum}")
    return int(raw)


def page_bounds(url: httpx.URL, total: int) -> tuple[int, int, str | None]:
    """(start, end, nextLink) of one page of a Defender collection of `total` records, paged as Defender pages.

    Without `$top` a page holds 10,000 records from `$skip` on and links to the next with `$skip` moved on; with
    `$top` (at most 10,000) the answer is that many records from `$skip` and never has a nextLink, even when
    more records match. Defender's own links never carry `$skiptoken`: the simulator refuses one, so no client
    comes to rely on it.
    """
    params = url.params
    if "$skiptoken" in params:
        raise ApiError(400, "Invalid OData query: $skiptoken is not supported here, page with $skip")
    skip = int_param(params, "$skip", 0, 10**9)
    top = int_param(params, "$top", MAX_TOP, MAX_TOP) if "$top" in params else None
    start = min(skip, total)
    end = min(total, start + (MAX_TOP if top is None else top))
    if top is None and end < total:
        return start, end, str(url.copy_set_param("$skip", str(end)))
    return start, end, None


def route(raw_path: bytes) -> tuple[str, str]:
    """Map a raw path to (api kind, machine id or name or ""); each segment is percent-decoded exactly once."""
    path = raw_path.split(b"?", 1)[0].decode("ascii", "replace")
    segments = [unquote(segment) for segment in path.split("/")]
    # A decoded "/" inside a segment (from %2F) must not let a name address another route.
    if segments[:1] != [""] or any("/" in segment for segment in segments):
        raise ApiError(404, "Resource not found")
    lowered = [segment.lower() for segment in segments[1:]]
    match lowered:
        case ["v1.0", "security", "alerts_v2"]:
            return GRAPH_ALERTS, ""
        case ["v1.0", "security", "alerts_v2", _]:
            return "graph-alert", segments[4]
        case ["v1.0", "security", "alerts_v2", _, "comments"]:
            return "graph-alert-comments", segments[4]
        case ["v1.0", "security", "runhuntingquery"]:
            return GRAPH_HUNTING, ""
        case ["api", "alerts"]:
            return "alerts", ""
        case ["api", "alerts", _]:
            return "alert-update", segments[3]
        case ["api", "machines"]:
            return "machines-list", ""
        case ["api", "machines", _]:
            return "machine-get", segments[3]
        case ["api", "machines", _, "alerts"]:
            return "machine-alerts", segments[3]
    raise ApiError(404, f"No API at {path}")


def check_audience(token: str, host: str) -> None:
    """Refuse a JWT issued for another API, as Graph does; opaque test tokens carry no audience and pass."""
    parts = token.split(".")
    if len(parts) != 3:
        return
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        raise ApiError(401, "Access token validation failure.") from None
    audience = str(claims.get("aud") or "") if isinstance(claims, dict) else ""
    aud_host = (urlsplit(audience).hostname or "").lower()
    if audience.lower() != GRAPH_APP_ID and aud_host not in GRAPH_HOSTS | {host.lower()}:
        raise ApiError(401, "Access token validation failure. Invalid audience.")
