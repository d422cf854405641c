"""Built-in Microsoft Defender for Endpoint simulator.

A simulated tenant that answers the same HTTP API as Defender, mounted into httpx as a transport, so the bot's real
client code (auth header, paging, filters, rate-limit and error handling) runs end to end with no network and no
credentials. The data set is deterministic and deliberately awkward: duplicate hostnames, free-text device names,
unknown enum values, a 500-alert device and alerts whose text tries to inject Slack control sequences.
"""

from __future__ import annotations

import hashlib
import math
import operator
import random
import re
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import unquote

import httpx

Json = dict[str, Any]  # a Defender JSON object, camelCase keys as on the wire

SIMULATOR_BASE_URL = "https://api.simulator.invalid"
AAD_TENANT_ID = "0f3c2b1a-5d4e-4f6a-9b8c-7d6e5f4a3b2c"

HOSTILE_HOSTNAME = "ws-eng-666.contoso.local"
BUSY_HOSTNAME = "srv-build-07.contoso.local"
QUIET_HOSTNAME = "ws-reception-01.contoso.local"
DUPLICATE_HOSTNAME = "lt-dev-042.contoso.local"

# Fixed seed: the data set must be identical on every run so tests can rely on it.
_SEED = 20261126
_ODATA = "https://api.security.microsoft.com/api/$metadata#"
_WINDOW_SECONDS = 60.0
_MAX_TOP = 10_000
# Defender returns 0, 1, 3 or 7 fractional digits depending on the backend that wrote the field.
_FRACTION_DIGITS = (0, 1, 3, 7)
# Error codes Defender uses where they differ from the HTTP reason phrase.
_ERROR_CODES = {400: "InvalidInput", 404: "ResourceNotFound"}
_RBAC_GROUPS = {"Workstations": 101, "Servers": 102, "Laptops": 103, "Mobile": 104}


class _Device(NamedTuple):
    host: str
    platform: str
    version: str
    build: int | None
    group: str
    health: str
    risk: str
    exposure: str
    value: str
    tags: tuple[str, ...]
    seen_hours_ago: float
    alerts: int
    generation: int = 1  # re-onboarded devices get a new id per generation


# The data tables below are laid out by hand (one row per record), so the formatter leaves them alone.
# fmt: off
_DEVICES = (
    _Device("ws-fin-014.contoso.local", "Windows11", "23H2", 22631, "Workstations", "Active", "High", "High",
            "Normal", ("Finance",), 0.3, 7),
    _Device("ws-fin-015.contoso.local", "Windows10", "22H2", 19045, "Workstations", "Active", "Low", "Medium",
            "Normal", ("Finance",), 0.5, 2),
    _Device("ws-eng-101.contoso.local", "Windows11", "23H2", 22631, "Workstations", "Active", "Medium", "Medium",
            "Normal", ("Engineering",), 1.0, 4),
    _Device(HOSTILE_HOSTNAME, "Windows11", "23H2", 22631, "Workstations", "Active", "High", "High", "Normal",
            ("Engineering", "<!channel>"), 0.1, 2),
    _Device(QUIET_HOSTNAME, "Windows11", "23H2", 22631, "Workstations", "Active", "None", "Low", "Normal",
            ("Reception",), 0.2, 0),
    _Device("ws-kiosk-03.contoso.local", "Windows10", "21H2", 19044, "Workstations", "Inactive", "None", "Low",
            "Normal", ("Kiosk",), 600.0, 1),
    _Device("srv-sql-02.contoso.local", "WindowsServer2022", "21H2", 20348, "Servers", "Active", "Medium", "High",
            "High", ("SQL", "Tier1"), 0.2, 5),
    _Device("srv-dc-01.contoso.local", "WindowsServer2022", "21H2", 20348, "Servers", "Active", "High", "High",
            "High", ("DomainController", "Tier0"), 0.05, 10),
    _Device(BUSY_HOSTNAME, "WindowsServer2019", "1809", 17763, "Servers", "Active", "Medium", "Medium", "Normal",
            ("CI",), 0.1, 500),
    _Device("srv-backup-01.contoso.local", "WindowsServer2022", "21H2", 20348, "Servers",
            "NoSensorDataImpairedCommunication", "Low", "Low", "High", (), 30.0, 1),
    _Device("lnx-k8s-node-04.contoso.local", "Linux", "22.04", None, "Servers", "Active", "Low", "Medium", "Normal",
            ("kubernetes",), 0.4, 3),
    _Device("mac-design-07", "macOS", "14.5", None, "Laptops", "Active", "Low", "Low", "Normal", ("Design",), 2.0, 2),
    _Device("mac-design-08", "macOS", "13.6", None, "Laptops", "Inactive", "None", "None", "Normal", ("Design",),
            400.0, 0),
    _Device("lt-hr-031.contoso.local", "Windows11", "22H2", 22621, "Laptops", "Active", "Medium", "Medium", "Normal",
            ("HR",), 3.0, 3),
    _Device("lt-hr-032.contoso.local", "Windows10", "22H2", 19045, "Laptops", "ImpairedCommunication", "Low",
            "Medium", "Normal", ("HR",), 50.0, 1),
    _Device("lt-sales-112.contoso.local", "Windows11", "23H2", 22631, "Laptops", "NoSensorData", "None", "Low",
            "Normal", ("Sales",), 200.0, 0),
    _Device("lt-exec-001.contoso.local", "Windows11", "23H2", 22631, "Laptops", "Active", "High", "Medium", "High",
            ("VIP", "Executive"), 0.7, 6),
    # Re-onboarded laptop: the newer record is listed first so "last record wins" bugs show up.
    _Device(DUPLICATE_HOSTNAME, "Windows11", "23H2", 22631, "Laptops", "Active", "Low", "Low", "Normal",
            ("Developers",), 0.2, 1, generation=2),
    _Device(DUPLICATE_HOSTNAME, "Windows10", "22H2", 19045, "Laptops", "Inactive", "Medium", "Medium", "Normal",
            ("Developers",), 960.0, 2),
    _Device("Pixel 8 (J. Doe)", "Android", "14", None, "Mobile", "Active", "Low", "Low", "Normal", (), 5.0, 1),
    _Device("Pat O'Brien's iPhone", "iOS", "17.5.1", None, "Mobile", "Active", "None", "Low", "Normal", (), 8.0, 1),
)


class _Template(NamedTuple):
    title: str
    description: str
    category: str
    source: str
    family: str | None
    threat: str | None
    mitre: tuple[str, ...] | str  # Defender sometimes returns a bare string instead of a list


_TEMPLATES = (
    _Template("Suspicious PowerShell command line", "PowerShell ran an encoded command typical of attacker tooling.",
              "Execution", "WindowsDefenderAtp", None, None, ("T1059.001", "T1027")),
    _Template("'Emotet' malware was detected", "Microsoft Defender Antivirus detected and quarantined Emotet.",
              "Malware", "WindowsDefenderAv", "Emotet", "Trojan:Win32/Emotet.RT!MTB", ()),
    _Template("Suspicious access to LSASS service", "A process read LSASS memory, possibly to dump credentials.",
              "CredentialAccess", "WindowsDefenderAtp", None, None, ("T1003.001",)),
    _Template("Possible lateral movement using PsExec", "A remote service was created with PsExec from another host.",
              "LateralMovement", "WindowsDefenderAtp", None, None, "T1021.002"),
    _Template("Anomalous scheduled task created", "A scheduled task launching a script from a temp folder appeared.",
              "Persistence", "WindowsDefenderAtp", None, None, "T1053.005"),
    _Template("Suspicious process injection observed", "A process injected code into another process.",
              "SuspiciousActivity", "WindowsDefenderAtp", None, None, ("T1055", "T1055.012")),
    _Template("RDP brute force from the internet", "Custom detection rule: many failed RDP logons from one address.",
              "CredentialAccess", "CustomDetection", None, None, ("T1110",)),
    _Template("Automated investigation found malicious files", "AIR flagged files as malicious and remediated them.",
              "SuspiciousActivity", "AutomatedInvestigation", None, None, ()),
    _Template("'Mimikatz' hacktool was prevented", "Microsoft Defender Antivirus blocked a credential theft tool.",
              "Malware", "WindowsDefenderAv", "Mimikatz", "HackTool:Win32/Mimikatz.D", ()),
    _Template("Connection to a custom network indicator", "The device contacted an address on the tenant blocklist.",
              "CommandAndControl", "CustomerTI", None, None, "T1071"),
    _Template("Ransomware behavior detected in the file system", "Many files were renamed and encrypted quickly.",
              "Ransomware", "WindowsDefenderAtp", "LockBit", None, ("T1486", "T1490")),
    _Template("Hands-on-keyboard activity", "Defender Experts observed an operator running discovery commands.",
              "Discovery", "ThreatExperts", None, None, ("T1087", "T1069")),
    _Template("Malicious URL blocked by SmartScreen", "A user opened a phishing link; SmartScreen blocked it.",
              "InitialAccess", "WindowsDefenderSmartScreen", None, None, "T1566.002"),
)

_SEVERITIES = ("UnSpecified", "Informational", "Low", "Medium", "High")
_SEVERITY_WEIGHTS = (1, 3, 4, 5, 3)
_STATUSES = ("New", "InProgress", "Resolved")
_STATUS_WEIGHTS = (4, 2, 5)
# (classification, determination) pairs; New alerts are never classified.
_VERDICTS = (
    (None, None),
    ("TruePositive", "Malware"),
    ("TruePositive", "MultiStagedAttack"),
    ("InformationalExpectedActivity", "SecurityTesting"),
    ("InformationalExpectedActivity", "LineOfBusinessApplication"),
    ("FalsePositive", "NotMalicious"),
    ("FalsePositive", "NotEnoughDataToValidate"),
)
_INVESTIGATION_STATES = ("Unknown", "Terminated", "SuccessfullyRemediated", "Benign", "Failed", "PartiallyRemediated",
                         "Running", "PendingApproval", "PendingResource", "Queued", "UnsupportedAlertType",
                         "SuppressedAlert")
_ASSIGNEES = ("secops@contoso.com", "j.doe@contoso.com", "p.obrien@contoso.com", "Automation")
_RELATED_USERS: tuple[Json | str | None, ...] = (
    {"userName": "jdoe", "domainName": "CONTOSO"},
    "CONTOSO\\svc-sql",
    None,
    {"userName": "p.obrien", "domainName": "contoso.local"},
)
# Alert id prefixes differ by the detection pipeline that raised the alert.
_ID_PREFIXES = {"CustomDetection": "ed", "CustomerTI": "ti", "ThreatExperts": "te"}
_COMMENTS = ("Looking into it.", "Confirmed with the device owner.", "Isolated the device pending review.")

_LONG_TITLE = "Multi-stage incident: " + " -> ".join(f"stage {n} (T10{n:02d})" for n in range(1, 16))
_LONG_DESCRIPTION = ("Line: *bold* _italic_ ~strike~ `code` > quote <!everyone> &amp; <#C024BE7LH>\n" * 200)[:10_000]

# Alerts whose text tries to ping channels, spoof links or corrupt terminals and layouts.
_HOSTILE_ALERTS: tuple[Json, ...] = (
    {"title": "<!channel> Urgent: <https://evil.example/login|Reset your password>", "severity": "High"},
    {"title": "<@U024BE7LH> & <!here> <!subteam^S123>",
     "relatedUser": {"userName": "<!everyone>", "domainName": "<@U024BE7LH>"}},
    {"title": "Invoice\u202egpj.exe opened by pay\u200broll\u200d\ufeff"},
    {"title": "\x1b[31mCRITICAL\x1b[0m wiper \x1b]8;;https://evil.example\x07click\x1b]8;;\x07"},
    {"title": _LONG_TITLE},
    {"title": "Encoded payload dump", "description": _LONG_DESCRIPTION},
    {"title": "*bold* _it_ ~st~ `code` ```block``` > quote", "status": "InProgress",
     "assignedTo": "<script>alert('x')</script>@contoso.com"},
)
# Extra alerts pinned to specific devices so rare values are guaranteed to exist.
_EXTRA_ALERTS: tuple[tuple[str, Json], ...] = (
    *((HOSTILE_HOSTNAME, fields) for fields in _HOSTILE_ALERTS),
    ("srv-dc-01.contoso.local", {"severity": "Critical"}),  # not a documented severity: tolerant parsing
    ("srv-dc-01.contoso.local", {"status": "Unknown"}),
    ("ws-fin-014.contoso.local", {"status": "Dismissed"}),  # not a documented status either
)

# Filter grammars. OData string literals double embedded quotes: 'o''brien' means o'brien.
_LITERAL = r"'((?:[^']|'')*)'"
_TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,7})?Z"
_MACHINE_EQ = re.compile(rf"computerDnsName\s+eq\s+{_LITERAL}")
_MACHINE_PREFIX = re.compile(rf"startswith\(\s*computerDnsName\s*,\s*{_LITERAL}\s*\)")
_ALERT_CLAUSE = re.compile(rf"(?P<field>\w+)\s+(?P<op>eq|ne|ge|gt|le|lt)\s+(?:{_LITERAL}|(?P<ts>{_TIMESTAMP}))")
_AND = re.compile(r"\s+and\s+")
_TEXT_FIELDS = {"status", "severity", "category", "detectionSource"}
_TIME_FIELDS = {"lastUpdateTime", "alertCreationTime"}
_TIMESTAMP_RE = re.compile(_TIMESTAMP)
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq, "ne": operator.ne, "ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt,
}
# Static part of every alert record; per-alert values and fresh lists are added by _base_alert.
_ALERT_DEFAULTS: Json = {
    "investigationId": None, "assignedTo": None, "severity": "Medium", "status": "New", "classification": None,
    "determination": None, "investigationState": "Unknown", "detectionSource": "WindowsDefenderAtp",
    "category": "SuspiciousActivity", "threatFamilyName": None, "threatName": None, "title": "Simulated alert",
    "description": "", "resolvedTime": None, "aadTenantId": AAD_TENANT_ID, "relatedUser": None,
}
# fmt: on


class _ApiError(Exception):
    """An error answer; raised anywhere in request handling and rendered as a Defender error body."""

    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _default_code(status)
        self.headers = headers or {}

    def response(self) -> httpx.Response:
        body = {"error": {"code": self.code, "message": str(self), "target": str(uuid.uuid4())}}
        return httpx.Response(self.status, json=body, headers=self.headers)


class _Fault(NamedTuple):
    status: int
    code: str | None
    retry_after: int | None


def _default_code(status: int) -> str:
    return _ERROR_CODES.get(status) or httpx.codes.get_reason_phrase(status).replace(" ", "") or "Error"


def _iso(moment: datetime, digits: int = 7) -> str:
    """Render like Defender: UTC, `Z` suffix, 0-7 fractional digits."""
    base = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{moment.microsecond:06d}0"[:digits]
    return f"{base}.{fraction}Z" if digits else f"{base}Z"


def _ticks(stamp: object) -> int | None:
    """Exact 100 ns ticks of a Defender timestamp (datetime would drop the 7th digit); None if unparsable."""
    if not isinstance(stamp, str) or not _TIMESTAMP_RE.fullmatch(stamp):
        return None
    whole, _, fraction = stamp[:-1].partition(".")
    seconds = int(datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())
    return seconds * 10_000_000 + int(fraction.ljust(7, "0"))


def _literal(raw: str) -> str:
    return raw.replace("''", "'")


def _machine_id(device: _Device) -> str:
    return hashlib.sha1(f"{device.host}|{device.generation}".encode(), usedforsecurity=False).hexdigest()


def _text_predicate(field: str, compare: Callable[[Any, Any], Any], value: str) -> Callable[[Json], bool]:
    return lambda alert: bool(compare(alert.get(field), value))


def _time_predicate(field: str, compare: Callable[[Any, Any], Any], limit: int) -> Callable[[Json], bool]:
    def check(alert: Json) -> bool:
        ticks = _ticks(alert.get(field))
        return ticks is not None and bool(compare(ticks, limit))

    return check


def _alert_predicates(expression: str) -> list[Callable[[Json], bool]]:
    """Parse `clause and clause ...` for alerts; anything outside the supported subset is InvalidInput."""
    predicates: list[Callable[[Json], bool]] = []
    position = 0
    while True:
        match = _ALERT_CLAUSE.match(expression, position)
        if not match:
            raise _ApiError(400, f"Unsupported $filter expression: {expression}")
        field, op, text, stamp = match["field"], match["op"], match[3], match["ts"]
        limit = _ticks(stamp)
        if field in _TEXT_FIELDS and text is not None and op in ("eq", "ne"):
            predicates.append(_text_predicate(field, _COMPARE[op], _literal(text)))
        elif field in _TIME_FIELDS and limit is not None and op not in ("eq", "ne"):
            predicates.append(_time_predicate(field, _COMPARE[op], limit))
        else:
            raise _ApiError(400, f"Unsupported $filter clause: {match.group(0)}")
        if match.end() == len(expression):
            return predicates
        separator = _AND.match(expression, match.end())
        if not separator:
            raise _ApiError(400, f"Unsupported $filter expression: {expression}")
        position = separator.end()


def _int_param(params: httpx.QueryParams, name: str, default: int, maximum: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", raw) or int(raw) > maximum:
        raise _ApiError(400, f"{name} must be an integer between 0 and {maximum}")
    return int(raw)


def _route(raw_path: bytes) -> tuple[str, str]:
    """Map a raw path to (api kind, machine id or name or ""); each segment is percent-decoded exactly once."""
    path = raw_path.split(b"?", 1)[0].decode("ascii", "replace")
    segments = [unquote(segment) for segment in path.split("/")]
    # A decoded "/" inside a segment (from %2F) must not let a name address another route.
    if segments[:1] != [""] or any("/" in segment for segment in segments):
        raise _ApiError(404, "Resource not found")
    lowered = [segment.lower() for segment in segments[1:]]
    match lowered:
        case ["api", "alerts"]:
            return "alerts", ""
        case ["api", "machines"]:
            return "machines-list", ""
        case ["api", "machines", _]:
            return "machine-get", segments[3]
        case ["api", "machines", _, "alerts"]:
            return "machine-alerts", segments[3]
    raise _ApiError(404, f"No API at {path}")


class SimulatedTenant:
    """A fake Defender tenant: devices, alerts, an API rate limiter and fault injection, all behind one lock."""

    def __init__(
        self,
        now: Callable[[], datetime] | None = None,
        calls_per_minute: int = 100,
        clock: Callable[[], float] | None = None,
        latency: float = 0.0,
        page_size: int = 200,
    ) -> None:
        self._now = now or (lambda: datetime.now(UTC))
        self._clock = clock or time.monotonic
        self.calls_per_minute = calls_per_minute
        self.latency = latency
        self.page_size = page_size
        self.machines: list[Json] = []
        self.alerts: list[Json] = []
        self.request_log: list[tuple[str, str]] = []
        self.calls = 0
        # Several client threads share one tenant; every read or write of the state above holds this lock.
        self._lock = threading.Lock()
        self._rng = random.Random(_SEED)
        self._alert_ids: set[str] = set()  # every id ever issued, so generated ids never repeat
        self._windows: defaultdict[str, deque[float]] = defaultdict(deque)
        self._faults: deque[_Fault] = deque()
        self._populate(self._now())

    @classmethod
    def default(cls) -> SimulatedTenant:
        """The built-in data set with default limits (same as calling the constructor)."""
        return cls()

    # -- helpers for tests -------------------------------------------------------------------------------------------

    def add_alert(self, machine_id: str, **fields: Any) -> Json:
        """Create an alert on a device, timestamped now; `fields` override any Defender field. Returns a copy."""
        with self._lock:
            machine = next((m for m in self.machines if m["id"] == machine_id), None)
            if machine is None:
                raise KeyError(machine_id)
            incident = 1 + max((a.get("incidentId") or 0 for a in self.alerts), default=0)
            alert = self._base_alert(machine, self._now(), incident)
            alert.update(fields)
            if any(a["id"] == alert["id"] for a in self.alerts):
                raise ValueError(f"duplicate alert id {alert['id']}")
            self._alert_ids.add(alert["id"])
            self.alerts.append(alert)
            return dict(alert)

    def set_alert_status(self, alert_id: str, status: str, **extra: Any) -> Json:
        """Change an alert's status as an analyst would, bumping lastUpdateTime so incremental polls see it."""
        with self._lock:
            alert = next((a for a in self.alerts if a["id"] == alert_id), None)
            if alert is None:
                raise KeyError(alert_id)
            stamp = _iso(self._now())
            alert.update(status=status, lastUpdateTime=stamp, resolvedTime=stamp if status == "Resolved" else None)
            alert.update(extra)
            return dict(alert)

    def fail_next(
        self, status_code: int, *, code: str | None = None, times: int = 1, retry_after: int | None = None
    ) -> None:
        """Answer the next `times` requests with this error (code defaults to Defender's for the status)."""
        with self._lock:
            self._faults.extend([_Fault(status_code, code, retry_after)] * times)

    # -- HTTP ----------------------------------------------------------------------------------------------------------

    def serve(self, request: httpx.Request) -> httpx.Response:
        """Answer one request exactly as Defender would; the transport delegates here."""
        if self.latency > 0:
            time.sleep(self.latency)  # outside the lock so slow calls still overlap
        with self._lock:
            self.calls += 1
            query = "&".join(f"{key}={value}" for key, value in request.url.params.multi_items())
            self.request_log.append((request.method, request.url.path + (f"?{query}" if query else "")))
            try:
                return self._dispatch(request)
            except _ApiError as error:
                return error.response()

    def _dispatch(self, request: httpx.Request) -> httpx.Response:
        if self._faults:
            fault = self._faults.popleft()
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
            raise _ApiError(fault.status, "Injected fault", fault.code, headers)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _ApiError(401, "Authorization header with a bearer token is required")
        kind, ident = _route(request.url.raw_path)
        if request.method != "GET":
            raise _ApiError(405, f"{request.method} is not allowed here", headers={"Allow": "GET"})
        self._admit(kind)
        params = request.url.params
        if kind == "machines-list":
            return httpx.Response(
                200, json={"@odata.context": _ODATA + "Machines", "value": self._list_machines(params.get("$filter"))}
            )
        if kind == "machine-get":
            return httpx.Response(
                200, json={"@odata.context": _ODATA + "Machines/$entity", **self._find_machine(ident)}
            )
        if kind == "machine-alerts":
            machine_id = ident.lower()
            if not any(m["id"] == machine_id for m in self.machines):
                raise _ApiError(404, f"Machine {ident} was not found")
            alerts = [a for a in self.alerts if a.get("machineId") == machine_id]
            return self._page(request.url, alerts)
        return self._page(request.url, self.alerts)

    def _admit(self, kind: str) -> None:
        """Sliding 60 s window per API, like Defender's per-API limits."""
        now = self._clock()
        window = self._windows[kind]
        while window and window[0] <= now - _WINDOW_SECONDS:
            window.popleft()
        if len(window) >= self.calls_per_minute:
            wait = max(1, math.ceil(window[0] + _WINDOW_SECONDS - now))
            raise _ApiError(429, f"Over {self.calls_per_minute} calls per minute", headers={"Retry-After": str(wait)})
        window.append(now)

    def _list_machines(self, expression: str | None) -> list[Json]:
        if expression is None:
            return self.machines
        if match := _MACHINE_EQ.fullmatch(expression.strip()):
            name = _literal(match[1]).casefold()
            return [m for m in self.machines if str(m["computerDnsName"]).casefold() == name]
        if match := _MACHINE_PREFIX.fullmatch(expression.strip()):
            prefix = _literal(match[1]).casefold()
            return [m for m in self.machines if str(m["computerDnsName"]).casefold().startswith(prefix)]
        raise _ApiError(400, f"Unsupported $filter expression: {expression}")

    def _find_machine(self, ident: str) -> Json:
        """By id, else by name case-insensitively; a re-onboarded name resolves to its most recently seen record."""
        by_id = [m for m in self.machines if m["id"] == ident.lower()]
        named = by_id or [m for m in self.machines if str(m["computerDnsName"]).casefold() == ident.casefold()]
        if not named:
            raise _ApiError(404, f"Machine {ident} was not found")
        return max(named, key=lambda m: _ticks(m.get("lastSeen")) or 0)

    def _page(self, url: httpx.URL, records: list[Json]) -> httpx.Response:
        """Filter, cap at $top and return one page, linking to the next with an offset $skiptoken."""
        params = url.params
        expression = params.get("$filter")
        if expression is not None:
            predicates = _alert_predicates(expression.strip())
            records = [r for r in records if all(p(r) for p in predicates)]
        total = min(len(records), _int_param(params, "$top", _MAX_TOP, _MAX_TOP))
        offset = _int_param(params, "$skiptoken", 0, _MAX_TOP)
        end = min(total, offset + self.page_size)
        body: Json = {"@odata.context": _ODATA + "Alerts", "value": records[offset:end]}
        if end < total:
            body["@odata.nextLink"] = str(url.copy_set_param("$skiptoken", str(end)))
        return httpx.Response(200, json=body)

    # -- data set ------------------------------------------------------------------------------------------------------

    def _populate(self, now: datetime) -> None:
        self.machines = [self._machine(device, now) for device in _DEVICES]
        for index, (device, machine) in enumerate(zip(_DEVICES, self.machines, strict=True)):
            extras = [fields for host, fields in _EXTRA_ALERTS if host == device.host]
            for number in range(device.alerts + len(extras)):
                overrides = extras[number - device.alerts] if number >= device.alerts else {}
                incident = 10_000 + index * 1_000 + number // 4  # a few alerts per incident, as in real tenants
                self.alerts.append(self._generated_alert(machine, now, incident, len(self.alerts), overrides))

    def _machine(self, device: _Device, now: datetime) -> Json:
        rng = self._rng
        windows = device.platform.startswith("Windows")
        last_seen = now - timedelta(hours=device.seen_hours_ago)
        internal = f"10.{rng.randint(0, 40)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}"
        record: Json = {
            "id": _machine_id(device),
            "computerDnsName": device.host,
            "firstSeen": _iso(last_seen - timedelta(days=rng.randint(60, 700)), 7),
            "lastSeen": _iso(last_seen, 7),
            "osPlatform": device.platform,
            "osVersion": None if windows else device.version,
            "osProcessor": "arm64" if device.platform in ("macOS", "Android", "iOS") else "x64",
            "version": device.version,
            "osBuild": device.build,
            "lastIpAddress": internal,
            "lastExternalIpAddress": f"203.0.113.{rng.randint(1, 254)}",
            "healthStatus": device.health,
            "onboardingStatus": "Onboarded",
            "rbacGroupName": device.group,
            "rbacGroupId": _RBAC_GROUPS[device.group],
            "riskScore": device.risk,
            "exposureLevel": device.exposure,
            "deviceValue": device.value,
            "isAadJoined": windows,
            "aadDeviceId": str(uuid.UUID(int=rng.getrandbits(128), version=4)) if device.platform != "Linux" else None,
            "machineTags": list(device.tags),
        }
        if windows:
            mac = "-".join(f"{rng.randint(0, 255):02X}" for _ in range(6))
            record["ipAddresses"] = [
                {"ipAddress": internal, "macAddress": mac, "type": "Ethernet", "operationalStatus": "Up"}
            ]
        return record

    def _base_alert(self, machine: Json, created: datetime, incident: int, id_prefix: str = "da") -> Json:
        """A plain New alert on `machine` at `created`; the generator and add_alert refine it."""
        stamp = _iso(created)
        return {
            "id": self._new_alert_id(created, id_prefix),
            "incidentId": incident,
            **_ALERT_DEFAULTS,
            "detectorId": str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
            **dict.fromkeys(("alertCreationTime", "firstEventTime", "lastEventTime", "lastUpdateTime"), stamp),
            "machineId": machine["id"],
            "computerDnsName": machine["computerDnsName"],
            "rbacGroupName": machine["rbacGroupName"],
            "mitreTechniques": [],
            "comments": [],
            "evidence": [],
        }

    def _generated_alert(self, machine: Json, now: datetime, incident: int, serial: int, overrides: Json) -> Json:
        """A varied, internally consistent alert; `serial` rotates timestamp precision so every form appears."""
        rng = self._rng
        template = rng.choice(_TEMPLATES)
        # Timeline first event < last event < created < comment < updated < now, each step at least a second
        # apart so that truncating to fewer fractional digits can never reorder them.
        created = now - timedelta(seconds=rng.randint(600, 30 * 86_400), microseconds=rng.randint(0, 999_999))
        lead = rng.randint(2, 3_600)
        first_event = created - timedelta(seconds=lead, microseconds=rng.randint(0, 999_999))
        last_event = first_event + timedelta(seconds=rng.uniform(1, lead - 1))
        updated = created + timedelta(seconds=rng.uniform(2, (now - created).total_seconds() - 2))
        severity = rng.choices(_SEVERITIES, _SEVERITY_WEIGHTS)[0]
        status = overrides.get("status", rng.choices(_STATUSES, _STATUS_WEIGHTS)[0])
        classification, determination = rng.choice(_VERDICTS)
        assignee = rng.choice(_ASSIGNEES)
        related = rng.choice(_RELATED_USERS)
        alert = self._base_alert(machine, created, incident, _ID_PREFIXES.get(template.source, "da"))
        digits = [_FRACTION_DIGITS[(serial + shift) % len(_FRACTION_DIGITS)] for shift in range(4)]
        last_update = _iso(updated, digits[3])
        comment = {
            "comment": rng.choice(_COMMENTS),
            "createdBy": assignee,
            "createdTime": _iso(created + (updated - created) / 2, 3),
        }
        triaged = status != "New"
        alert.update(
            {
                "severity": severity,
                "status": status,
                "title": template.title,
                "category": template.category,
                "description": f"{template.description} Device: {machine['computerDnsName']}.",
                "detectionSource": template.source,
                "threatFamilyName": template.family,
                "threatName": template.threat,
                "mitreTechniques": template.mitre if isinstance(template.mitre, str) else list(template.mitre),
                "investigationState": rng.choice(_INVESTIGATION_STATES),
                "investigationId": rng.randint(1, 9_999) if template.source == "AutomatedInvestigation" else None,
                "classification": classification if triaged else None,
                "determination": determination if triaged else None,
                "assignedTo": assignee if triaged else None,
                "relatedUser": dict(related) if isinstance(related, dict) else related,
                "alertCreationTime": _iso(created, digits[0]),
                "firstEventTime": _iso(first_event, digits[1]),
                "lastEventTime": _iso(last_event, digits[2]),
                "lastUpdateTime": last_update,
                "resolvedTime": last_update if status == "Resolved" else None,  # resolving is the last update
                "comments": [comment] if triaged else [],
            }
        )
        alert.update(overrides)
        return alert

    def _new_alert_id(self, created: datetime, prefix: str) -> str:
        """Defender-style id: prefix, .NET ticks of creation, `_`, signed 32-bit hash (so `_-` occurs too)."""
        ticks = (created - datetime(1, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 10
        while True:
            alert_id = f"{prefix}{ticks}_{self._rng.randint(-(2**31), 2**31 - 1)}"
            if alert_id not in self._alert_ids:
                self._alert_ids.add(alert_id)
                return alert_id


class SimulatorTransport(httpx.BaseTransport):
    """httpx transport that routes every request to a SimulatedTenant instead of the network."""

    def __init__(self, tenant: SimulatedTenant) -> None:
        self.tenant = tenant

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Serve `request` from the simulated tenant (thread-safe; the tenant holds its own lock)."""
        return self.tenant.serve(request)
