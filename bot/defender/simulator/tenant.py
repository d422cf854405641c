"""The simulated tenant and its httpx transport: the same HTTP APIs as Defender and Microsoft Graph, no network."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx

from bot.defender.simulator.dataset import (
    ALERT_DEFAULTS,
    ASSIGNEES,
    COMMENTS,
    DEVICES,
    EXTRA_ALERTS,
    FRACTION_DIGITS,
    ID_PREFIXES,
    INVESTIGATION_STATES,
    ODATA,
    RELATED_USERS,
    SEED,
    SEVERITIES,
    SEVERITY_WEIGHTS,
    STATUS_WEIGHTS,
    STATUSES,
    TEMPLATES,
    VERDICTS,
    Json,
    iso,
    machine_record,
)
from bot.defender.simulator.fleet import Directory, Fleet, FleetSpec
from bot.defender.simulator.graph import alerts_page, graph_alerts
from bot.defender.simulator.hunting import hunting_answer
from bot.defender.simulator.odata import (
    GRAPH_ALERTS,
    GRAPH_HUNTING,
    MACHINE_EQ,
    MACHINE_PREFIX,
    ROLES,
    ApiError,
    Fault,
    alert_predicates,
    check_audience,
    literal,
    page_bounds,
    route,
    ticks,
)
from bot.defender.simulator.throttle import RateWindows
from bot.defender.simulator.writes import GRAPH_WRITES, WRITE_KINDS, AlertWrites


class SimulatedTenant:
    """A fake Defender tenant: devices, alerts, API rate limiters and fault injection, all behind one lock.

    It answers Defender for Endpoint's API and Microsoft Graph's security alerts_v2 and runHuntingQuery, both
    views of the same devices and alerts (`graph`, `hunting`). Defender's collections page as Defender's do
    (10,000 records a page, `$skip`; with `$top` one answer and no nextLink: `odata.page_bounds`).

    - `now`, `clock`: wall time for the data and its timestamps; monotonic time for the rate limits.
    - `calls_per_minute`, `calls_per_hour`: Defender's limits per API (100 and 1,500); Graph's are in `limits`.
    - `latency`: seconds every request takes.
    - `fleet`: devices beyond the built-in ones (`FleetSpec(devices=100_000)`: an enterprise tenant, with
      re-onboarded devices whose stale records linger; see `fleet`). The built-in data set is the same either way.
    - `ingestion_lag`: seconds from an alert's `lastUpdateTime` until the APIs show that version of it. Until
      then they show the version before (`set_alert_status` keeps it) or, for a new alert, nothing, as Defender
      does while an update is still being ingested. A poll whose watermark is "now" misses such an update.
    """

    def __init__(
        self,
        now: Callable[[], datetime] | None = None,
        calls_per_minute: int = 100,
        clock: Callable[[], float] | None = None,
        latency: float = 0.0,
        *,
        calls_per_hour: int = 1_500,
        fleet: FleetSpec | None = None,
        ingestion_lag: float = 0.0,
    ) -> None:
        self._now = now or (lambda: datetime.now(UTC))
        self._clock = clock or time.monotonic
        self.calls_per_minute = calls_per_minute
        self.calls_per_hour = calls_per_hour
        self.latency = latency
        self.ingestion_lag = ingestion_lag
        # Microsoft Graph: page size without $top (Graph's is undocumented) and rate limits per API, as Graph's.
        self.graph_page_size = 1000
        self.limits = {GRAPH_ALERTS: 150, GRAPH_HUNTING: 45, **dict.fromkeys(GRAPH_WRITES, 150)}
        self.graph_roles = set(ROLES.values())  # application permissions granted; take one away for a 403
        self.links: dict[str, list[str]] = {}  # alert id -> more devices it concerns (Graph evidence only)
        self.machines: list[Json] = []
        self.alerts: list[Json] = []
        self.request_log: list[tuple[str, str]] = []
        self.calls = 0
        # Several client threads share one tenant; every read or write of the state above holds this lock.
        self._lock = threading.Lock()
        self._rng = random.Random(SEED)
        self._alert_ids: set[str] = set()  # every id ever issued, so generated ids never repeat
        self._versions: dict[str, list[Json]] = {}  # alert id -> its earlier versions, oldest first
        self._windows = RateWindows(self._clock)
        self._faults: deque[Fault] = deque()
        self.writes = AlertWrites(self._clock, self._now)  # PATCH/POST on alerts (`writes`)
        self._populate(self._now())
        self.fleet = Fleet(fleet or FleetSpec(), self._now())
        self.directory = Directory(self.machines, self.fleet)
        self._fleet_alerts()

    @classmethod
    def default(cls) -> SimulatedTenant:
        """The built-in data set with default limits (same as calling the constructor)."""
        return cls()

    # -- helpers for tests -------------------------------------------------------------------------------------------

    def add_alert(self, machine_id: str, **fields: Any) -> Json:
        """Create an alert on a device, timestamped now; `fields` override any Defender field. Returns a copy."""
        with self._lock:
            machine = self.directory.by_id(machine_id)
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
            if self.ingestion_lag > 0:  # shown until the new version is ingested
                self._versions.setdefault(alert_id, []).append(dict(alert))
            stamp = iso(self._now())
            alert.update(status=status, lastUpdateTime=stamp, resolvedTime=stamp if status == "Resolved" else None)
            alert.update(extra)
            return dict(alert)

    def link_device(self, alert_id: str, machine_id: str) -> None:
        """The alert also concerns this device: Graph lists it in the evidence; Defender's API still shows one."""
        with self._lock:
            if not any(a["id"] == alert_id for a in self.alerts):
                raise KeyError(alert_id)
            if self.directory.by_id(machine_id) is None:
                raise KeyError(machine_id)
            self.links.setdefault(alert_id, []).append(machine_id)

    def fail_next(
        self,
        status_code: int,
        *,
        code: str | None = None,
        times: int = 1,
        retry_after: int | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next `times` requests (those to `path` only, when given: concurrent calls of one lookup
        take faults in any order) with this error; the code defaults to the API's own for the status."""
        with self._lock:
            self._faults.extend([Fault(status_code, code, retry_after, path)] * times)

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
                response = self._dispatch(request)
            except ApiError as error:
                response = error.response(graph=request.url.path.lower().startswith("/v1.0/"))
            response.headers["Date"] = format_datetime(self._now(), usegmt=True)  # as every HTTP answer has
            return response

    def _dispatch(self, request: httpx.Request) -> httpx.Response:
        fault = next((f for f in self._faults if f.path in (None, request.url.path)), None)
        if fault is not None:
            self._faults.remove(fault)
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
            raise ApiError(fault.status, "Injected fault", fault.code, headers)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "Authorization header with a bearer token is required")
        kind, ident = route(request.url.raw_path)
        if kind in WRITE_KINDS:
            return self._write(kind, ident, request, token)
        if kind in ROLES:
            return self._graph(kind, request, token)
        if request.method != "GET":
            raise ApiError(405, f"{request.method} is not allowed here", headers={"Allow": "GET"})
        self._admit(kind)
        params = request.url.params
        if kind == "machines-list":
            return self._page(request.url, "Machines", self._machine_query(params.get("$filter")))
        if kind == "machine-get":
            return httpx.Response(200, json={"@odata.context": ODATA + "Machines/$entity", **self._find_machine(ident)})
        alerts = self._visible(self.alerts)  # what has been ingested is what the filter sees
        if kind == "machine-alerts":
            machine_id = ident.lower()
            if self.directory.by_id(machine_id) is None:
                raise ApiError(404, f"Machine {ident} was not found")
            alerts = [a for a in alerts if a.get("machineId") == machine_id]
        if (expression := params.get("$filter")) is not None:
            predicates = alert_predicates(expression.strip())
            alerts = [a for a in alerts if all(p(a) for p in predicates)]
        return self._page(request.url, "Alerts", alerts)

    def _graph(self, kind: str, request: httpx.Request, token: str) -> httpx.Response:
        """A Microsoft Graph request (see `graph` and `hunting` for what each API accepts)."""
        method = "GET" if kind == GRAPH_ALERTS else "POST"
        if request.method != method:
            raise ApiError(405, f"{request.method} is not allowed here", headers={"Allow": method})
        check_audience(token, request.url.host)
        if ROLES[kind] not in self.graph_roles:  # Graph's 403 does not reliably name the missing permission
            raise ApiError(403, "Insufficient privileges to complete the operation.", "Forbidden")
        self._admit(kind)
        if kind == GRAPH_HUNTING:
            return hunting_answer(request, self.directory.hunted, self._now())
        converted = graph_alerts(self._visible(self.alerts), self.machines, self.links, self._fleet_alerting)
        return alerts_page(request.url, converted, self.graph_page_size)

    def _write(self, kind: str, alert_id: str, request: httpx.Request, token: str) -> httpx.Response:
        if kind in GRAPH_WRITES:
            check_audience(token, request.url.host)
        self._admit(kind)
        view = lambda alert: graph_alerts([alert], self.machines, self.links)[0]  # noqa: E731
        return self.writes.answer(kind, alert_id, request, self.alerts, view)

    def _admit(self, kind: str) -> None:
        """Sliding windows per API: Defender's per minute and per hour, Graph's per minute (`limits`)."""
        per_hour = None if kind in self.limits else self.calls_per_hour
        self._windows.admit(kind, self.limits.get(kind, self.calls_per_minute), per_hour)

    def _visible(self, alerts: list[Json]) -> list[Json]:
        """Each alert as the APIs show it now: its newest version ingested (`ingestion_lag`), or nothing yet."""
        if self.ingestion_lag <= 0:
            return alerts
        cutoff = ticks(iso(self._now() - timedelta(seconds=self.ingestion_lag))) or 0
        shown = []
        for alert in alerts:
            ingested = [
                version
                for version in (*self._versions.get(alert["id"], ()), alert)
                if (ticks(version.get("lastUpdateTime")) or 0) <= cutoff
            ]
            shown.extend(ingested[-1:])
        return shown

    def _machine_query(self, expression: str | None) -> list[Json | int]:
        if expression is None:
            return self.directory.every()
        if match := MACHINE_EQ.fullmatch(expression.strip()):
            return self.directory.named(literal(match[1]))
        if match := MACHINE_PREFIX.fullmatch(expression.strip()):
            return self.directory.prefixed(literal(match[1]))
        raise ApiError(400, f"Invalid OData query: unsupported $filter expression: {expression}")

    def _find_machine(self, ident: str) -> Json:
        """By id, else by name case-insensitively. A name with several records (a re-onboarded device) answers
        with its stalest one: which record Defender returns is undocumented, so the simulator returns the one
        that exposes a client trusting it."""
        found = self.directory.by_id(ident.lower())
        if found is not None:
            return found
        named = [self.directory.record(key) for key in self.directory.named(ident)]
        if not named:
            raise ApiError(404, f"Machine {ident} was not found")
        return min(named, key=lambda m: ticks(m.get("lastSeen")) or 0)

    def _page(self, url: httpx.URL, entity: str, records: list[Any]) -> httpx.Response:
        """One page of a Defender collection, paged as Defender pages (`page_bounds`)."""
        start, end, next_link = page_bounds(url, len(records))
        body: Json = {"@odata.context": ODATA + entity, "value": [self.directory.record(r) for r in records[start:end]]}
        if next_link is not None:
            body["@odata.nextLink"] = next_link
        return httpx.Response(200, json=body)

    # -- data set ------------------------------------------------------------------------------------------------------

    def _populate(self, now: datetime) -> None:
        self.machines = [machine_record(device, now, self._rng) for device in DEVICES]
        for index, (device, machine) in enumerate(zip(DEVICES, self.machines, strict=True)):
            extras = [fields for host, fields in EXTRA_ALERTS if host == device.host]
            for number in range(device.alerts + len(extras)):
                overrides = extras[number - device.alerts] if number >= device.alerts else {}
                incident = 10_000 + index * 1_000 + number // 4  # a few alerts per incident, as in real tenants
                self.alerts.append(self._generated_alert(machine, now, incident, len(self.alerts), overrides))

    def _fleet_alerts(self) -> None:
        """A few alerts on each record of every `alerting_every`-th fleet device, the stale records' from before."""
        self._fleet_alerting = {m["id"]: m for m in map(self.fleet.record, self.fleet.alerting())}
        for machine in self._fleet_alerting.values():
            seen = datetime.fromisoformat(str(machine["lastSeen"])[:26] + "+00:00")
            for _ in range(1 + len(self.alerts) % 2):
                incident = 1 + len(self.alerts)
                self.alerts.append(self._generated_alert(machine, seen, incident, len(self.alerts), {}))

    def _base_alert(self, machine: Json, created: datetime, incident: int, id_prefix: str = "da") -> Json:
        """A plain New alert on `machine` at `created`; the generator and add_alert refine it."""
        stamp = iso(created)
        return {
            "id": self._new_alert_id(created, id_prefix),
            "incidentId": incident,
            **ALERT_DEFAULTS,
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
        template = rng.choice(TEMPLATES)
        # Timeline first event < last event < created < comment < updated < now, each step at least a second
        # apart so that truncating to fewer fractional digits can never reorder them.
        created = now - timedelta(seconds=rng.randint(600, 30 * 86_400), microseconds=rng.randint(0, 999_999))
        lead = rng.randint(2, 3_600)
        first_event = created - timedelta(seconds=lead, microseconds=rng.randint(0, 999_999))
        last_event = first_event + timedelta(seconds=rng.uniform(1, lead - 1))
        updated = created + timedelta(seconds=rng.uniform(2, (now - created).total_seconds() - 2))
        severity = rng.choices(SEVERITIES, SEVERITY_WEIGHTS)[0]
        status = overrides.get("status", rng.choices(STATUSES, STATUS_WEIGHTS)[0])
        classification, determination = rng.choice(VERDICTS)
        assignee = rng.choice(ASSIGNEES)
        related = rng.choice(RELATED_USERS)
        alert = self._base_alert(machine, created, incident, ID_PREFIXES.get(template.source, "da"))
        digits = [FRACTION_DIGITS[(serial + shift) % len(FRACTION_DIGITS)] for shift in range(4)]
        last_update = iso(updated, digits[3])
        comment = {
            "comment": rng.choice(COMMENTS),
            "createdBy": assignee,
            "createdTime": iso(created + (updated - created) / 2, 3),
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
                "investigationState": rng.choice(INVESTIGATION_STATES),
                "investigationId": rng.randint(1, 9_999) if template.source == "AutomatedInvestigation" else None,
                "classification": classification if triaged else None,
                "determination": determination if triaged else None,
                "assignedTo": assignee if triaged else None,
                "relatedUser": dict(related) if isinstance(related, dict) else related,
                "alertCreationTime": iso(created, digits[0]),
                "firstEventTime": iso(first_event, digits[1]),
                "lastEventTime": iso(last_event, digits[2]),
                "lastUpdateTime": last_update,
                "resolvedTime": last_update if status == "Resolved" else None,  # resolving is the last update
                "comments": [comment] if triaged else [],
            }
        )
        alert.update(overrides)
        return alert

    def _new_alert_id(self, created: datetime, prefix: str) -> str:
        """Defender-style id: prefix, .NET ticks of creation, `_`, signed 32-bit hash (so `_-` occurs too)."""
        created_ticks = (created - datetime(1, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 10
        while True:
            alert_id = f"{prefix}{created_ticks}_{self._rng.randint(-(2**31), 2**31 - 1)}"
            if alert_id not in self._alert_ids:
                self._alert_ids.add(alert_id)
                return alert_id
