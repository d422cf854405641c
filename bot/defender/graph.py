"""HTTP client for the Microsoft Graph security API: the successor of the Defender for Endpoint API.

Two endpoints: `GET /v1.0/security/alerts_v2` (application permission `SecurityAlert.Read.All`) for alerts, and
`POST /v1.0/security/runHuntingQuery` (`ThreatHunting.Read.All`) over the `DeviceInfo` table for devices,
including devices without alerts. Results are the same typed models the Defender client returns
(`bot.defender.graph_models` maps them); the HTTP machinery is the `ApiSession` both clients share.

alerts_v2 filters only on assignedTo, classification, determination, createdDateTime, lastUpdateDateTime,
severity, serviceSource and status, pages with `@odata.nextLink` (`$top` is the page size, at most 1,000) and
lists the newest alerts first. Its devices are in each alert's evidence: see `graph_models` for alerts with
several devices.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Unpack
from urllib.parse import urlsplit

from bot.defender.auth import TokenProvider
from bot.defender.clouds import graph_scope_for
from bot.defender.errors import (
    AuthError,
    BadResponse,
    DefenderError,
    DeviceNotFound,
    InvalidDeviceReference,
    PermissionDenied,
)
from bot.defender.graph_models import evidence_machines, parse_device_info, parse_graph_alert
from bot.defender.limits import Api, Priority
from bot.defender.models import Alert, Machine, format_timestamp, parse_timestamp
from bot.defender.refs import RefKind, parse_device_ref, path_segment
from bot.defender.session import ApiSession, ErrorReply, SessionClient, SessionOptions, parse_all
from bot.defender.updates import AlertUpdate

SERVICE = "Microsoft Graph"
ALERTS_PATH = "/v1.0/security/alerts_v2"
HUNTING_PATH = "/v1.0/security/runHuntingQuery"
MAX_PAGE_SIZE = 1000  # Graph refuses a larger $top on alerts_v2
MAX_TAKE = 1000  # rows a device search asks for at most
# The application permission each API needs: Graph's 403 does not reliably name it.
PERMISSIONS = {
    Api.GRAPH_ALERTS: "SecurityAlert.Read.All",
    Api.GRAPH_HUNTING: "ThreatHunting.Read.All",
    Api.GRAPH_ALERT_UPDATE: "SecurityAlert.ReadWrite.All",
}
_READS = {
    Api.GRAPH_ALERTS: "read security alerts",
    Api.GRAPH_HUNTING: "run advanced hunting queries",
    Api.GRAPH_ALERT_UPDATE: "update security alerts",
}
# `aud` values a Graph token may carry: the host URL or Graph's well-known application id.
_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


@dataclass(frozen=True, slots=True)
class GraphAlerts:
    """One read of alerts_v2.

    `alerts`: one per alert id, newest created first. `devices`: each device of the alerts' evidence, as the most
    recently updated alert describes it. `complete` is False when the read may have stopped early (the page cap,
    or a last page that was full): the alerts are then the newest ones only, and the caller reads on (e.g.
    `alerts_created_since(..., before=)` the oldest one read).
    """

    alerts: list[Alert]
    devices: dict[str, Machine]
    complete: bool


class GraphClient(SessionClient):
    """Typed access to Microsoft Graph's security alerts and advanced hunting.

    `base_url` is the cloud's Graph host (`CloudEndpoints.graph_base`); the token must be for its scope
    (`CloudEndpoints.graph_scope`). `page_size` is alerts_v2's `$top` (1-1,000); `max_pages` bounds a read.
    """

    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider,
        *,
        page_size: int = MAX_PAGE_SIZE,
        **options: Unpack[SessionOptions],
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        self.scope = graph_scope_for(base_url)
        self._page_size = page_size
        self._session = ApiSession(base_url, tokens, service=SERVICE, errors=self._graph_error, **options)

    # Alerts ---------------------------------------------------------------------------------

    def alerts_updated_since(
        self, since: datetime, *, created_before: datetime | None = None, priority: Priority = Priority.BACKGROUND
    ) -> GraphAlerts:
        """Every alert in the tenant updated at or after `since` (`lastUpdateDateTime ge`), all pages.

        `created_before` reads on after an incomplete read (answers come newest created first).
        """
        odata = f"lastUpdateDateTime ge {format_timestamp(since)}"
        if created_before is not None:
            odata += f" and createdDateTime lt {format_timestamp(created_before)}"
        return self._alerts(odata, priority)

    def alerts_created_since(
        self, since: datetime, *, before: datetime | None = None, priority: Priority = Priority.BACKGROUND
    ) -> GraphAlerts:
        """Every alert created at or after `since` (and before `before`, to read on after an incomplete read)."""
        odata = f"createdDateTime ge {format_timestamp(since)}"
        if before is not None:
            odata += f" and createdDateTime lt {format_timestamp(before)}"
        return self._alerts(odata, priority)

    def _alerts(self, odata_filter: str, priority: Priority) -> GraphAlerts:
        params = {"$filter": odata_filter, "$top": str(self._page_size)}
        read = _AlertsRead()  # parses each page as it arrives: the raw JSON of a long read is never held whole
        complete = self._session.read_pages(Api.GRAPH_ALERTS, ALERTS_PATH, params, priority, read.add)
        # Microsoft does not document whether alerts_v2 takes $top as a page size (more pages follow by nextLink,
        # as the simulator answers) or as a total (no nextLink past it), as some Graph APIs do. A read that ends
        # on a full page may have been cut there: it counts as incomplete, and the caller reads on.
        if complete and read.records and read.records % self._page_size == 0:
            complete = False
        return GraphAlerts(list(read.alerts.values()), read.devices(), complete)

    # Devices (advanced hunting over DeviceInfo, the last 30 days) --------------------------

    def get_device(self, machine_id: str, *, priority: Priority = Priority.INTERACTIVE) -> Machine:
        """The device with this machine id, as its latest `DeviceInfo` record describes it."""
        ref = parse_device_ref(machine_id)
        if ref.kind is not RefKind.MACHINE_ID:
            raise InvalidDeviceReference("a device is looked up by machine id (40 hex characters) here")
        found = self._hunt_devices(f"DeviceId == {kql_string(ref.value)}", 1, priority)
        if not found:
            raise DeviceNotFound(ref.value)
        return found[0]

    def find_devices(
        self, hostname: str, *, prefix: bool = False, limit: int = 50, priority: Priority = Priority.INTERACTIVE
    ) -> list[Machine]:
        """Devices whose DeviceName equals (or, with `prefix`, starts with) `hostname`, case-insensitively.

        One `Machine` per device id (its latest record), most recently seen first, at most `limit`.
        """
        ref = parse_device_ref(hostname)
        operator = "startswith" if prefix else "=~"
        return self._hunt_devices(f"DeviceName {operator} {kql_string(ref.value)}", limit, priority)

    def _hunt_devices(self, predicate: str, limit: int, priority: Priority) -> list[Machine]:
        query = device_query(predicate, max(1, min(limit, MAX_TAKE)))
        body = self._session.post_json(Api.GRAPH_HUNTING, HUNTING_PATH, {"Query": query}, priority)
        rows = body.get("results")
        if not isinstance(rows, list):
            raise BadResponse(f"{SERVICE}'s hunting answer has no 'results' list")
        latest: dict[str, Machine] = {}  # the query keeps one row per device already; this only defends it
        for machine in parse_all(rows, parse_device_info, SERVICE):
            kept = latest.get(machine.id)
            if kept is None or _seen(machine) > _seen(kept):
                latest[machine.id] = machine
        return sorted(latest.values(), key=_seen, reverse=True)

    # Alert writes (SecurityAlert.ReadWrite.All) ---------------------------------------------

    def update_alert(
        self, alert_id: str, update: AlertUpdate, *, priority: Priority = Priority.INTERACTIVE
    ) -> Alert | None:
        """`PATCH alerts_v2/{id}` with the properties (if any), then `POST alerts_v2/{id}/comments` with the comment.

        Returns the alert as the PATCH answered it; None for a comment alone (the alert's properties are unchanged).
        """
        path = f"{ALERTS_PATH}/{path_segment(alert_id)}"
        updated = None
        if update.changes_properties:
            body = self._session.write_json(
                Api.GRAPH_ALERT_UPDATE, "PATCH", path, update.graph_body(), priority, alert_id
            )
            updated = parse_graph_alert(body)
        comment = {"@odata.type": "microsoft.graph.security.alertComment", "comment": update.comment}
        self._session.write_json(Api.GRAPH_ALERT_UPDATE, "POST", f"{path}/comments", comment, priority, alert_id)
        return updated

    # Errors ---------------------------------------------------------------------------------

    def _graph_error(self, reply: ErrorReply, not_found: str | None) -> DefenderError:
        """What a Graph error answer (other than 429) means, naming the fix where Graph does not."""
        if reply.status == 401:
            return AuthError(f"{SERVICE} rejected the app's token", hint=self._auth_hint(reply), target=reply.target)
        if reply.status == 403:
            permission = PERMISSIONS.get(reply.api)
            what = _READS.get(reply.api, "answer")
            need = f"the application permission {permission}, with admin consent" if permission else "a permission"
            said = f" (Graph said: {reply.message})" if reply.message else ""
            return PermissionDenied(
                f"{SERVICE} refused to {what}: the app needs {need}{said}", permission=permission, target=reply.target
            )
        if reply.status == 404 and not_found is not None:
            return DeviceNotFound(not_found, target=reply.target)
        answer = f"{SERVICE} answered {reply.status} {reply.code or ''}".strip()
        return BadResponse(f"{answer}: {reply.message}" if reply.message else answer, target=reply.target)

    def _auth_hint(self, reply: ErrorReply) -> str:
        audience = None
        with contextlib.suppress(DefenderError):
            audience = token_audience(self._session.tokens.token())
        wrong = "audience" in (reply.message or "").casefold() or (
            audience is not None and not _is_graph_audience(audience, self.scope)
        )
        if wrong:
            got = f" (it is for {audience})" if audience else ""
            return f"the token is not for Microsoft Graph{got}: request it with the scope {self.scope}"
        return f"the token does not fit Microsoft Graph: check the scope ({self.scope}), the cloud and admin consent"


def kql_string(value: str) -> str:
    """Quote `value` as a KQL string literal (backslash and quote escaped); references are validated anyway."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def device_query(predicate: str, take: int) -> str:
    """The KQL a device lookup sends: the latest `DeviceInfo` record per device, newest first, bounded."""
    return (
        f"DeviceInfo | where {predicate} | summarize arg_max(Timestamp, *) by DeviceId"
        f" | order by Timestamp desc | take {take}"
    )


def token_audience(token: str) -> str | None:
    """The `aud` claim of a JWT, read without verifying it (only to explain a 401); None if not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    audience = claims.get("aud") if isinstance(claims, dict) else None
    return audience if isinstance(audience, str) else None


def _is_graph_audience(audience: str, scope: str) -> bool:
    if audience.casefold() == _GRAPH_APP_ID:
        return True
    wanted = urlsplit(scope)
    got = urlsplit(audience)
    return (got.scheme, got.netloc.casefold()) == (wanted.scheme, wanted.netloc.casefold())


def _seen(machine: Machine) -> float:
    return machine.last_seen.timestamp() if machine.last_seen else 0.0


class _AlertsRead:
    """One read of alerts_v2, page by page: each alert once, and each evidence device from its newest alert."""

    def __init__(self) -> None:
        self.records = 0
        self.alerts: dict[str, Alert] = {}  # an alert created between two page reads shifts the pages: seen twice
        self._newest: dict[str, tuple[float, Machine]] = {}

    def add(self, page: list[Any]) -> None:
        self.records += len(page)
        for alert in parse_all(page, parse_graph_alert, SERVICE):
            self.alerts.setdefault(alert.id, alert)
        for record in page:
            if not isinstance(record, dict):
                continue
            updated = parse_timestamp(record.get("lastUpdateDateTime"))
            moment = updated.timestamp() if updated else 0.0
            for machine in evidence_machines(record):
                kept = self._newest.get(machine.id)
                if kept is None or moment > kept[0]:
                    self._newest[machine.id] = (moment, machine)

    def devices(self) -> dict[str, Machine]:
        return {machine_id: machine for machine_id, (_, machine) in self._newest.items()}
