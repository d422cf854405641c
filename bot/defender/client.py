"""HTTP client for the Defender for Endpoint API: typed results, typed errors.

The HTTP machinery (budget gate before every request, retries, token refresh, 429 memory, paging) is the
`ApiSession` it shares with the Microsoft Graph client (`bot.defender.graph`); this module holds the Defender
endpoints and what Defender's error answers mean.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Unpack

from bot.defender.auth import TokenProvider
from bot.defender.errors import (
    AuthError,
    BadResponse,
    DefenderError,
    DeviceNotFound,
    InvalidDeviceReference,
    PermissionDenied,
)
from bot.defender.limits import Api, Priority
from bot.defender.models import Alert, Machine, format_timestamp, parse_alert, parse_machine
from bot.defender.refs import RefKind, odata_literal, parse_device_ref, path_segment
from bot.defender.session import (
    DEFAULT_TIMEOUT,
    ApiSession,
    CallGate,
    ErrorReply,
    RequestCount,
    SessionClient,
    SessionOptions,
    counting_requests,
    parse_all,
)
from bot.defender.updates import AlertUpdate

__all__ = ["DEFAULT_TIMEOUT", "CallGate", "DefenderClient", "RequestCount", "counting_requests", "parse_all"]

log = logging.getLogger(__name__)

PREFIX_MATCHES = 25  # records a prefix search reads: a few names, each with a few re-onboarded records


class DefenderClient(SessionClient):
    """Typed access to the few Defender endpoints the bot uses.

    `transport` swaps the network for another httpx transport (the built-in simulator, tests).
    """

    def __init__(self, base_url: str, tokens: TokenProvider, **options: Unpack[SessionOptions]) -> None:
        self._session = ApiSession(base_url, tokens, service="Defender", errors=_defender_error, **options)

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
        records, _ = self._session.get_collection(Api.MACHINE_ALERTS, path, params, priority, not_found=ref.value)
        return parse_all(records, parse_alert)

    def get_machine(self, id_or_name: str, *, priority: Priority = Priority.INTERACTIVE) -> Machine:
        """One device by machine id (`GET /api/machines/{id}`) or computer name.

        A name can have several records (a re-imaged or re-onboarded device leaves its old ones for weeks), and
        which one `GET /api/machines/{name}` returns is undocumented: a name is looked up with
        `$filter=computerDnsName eq` instead, and the record seen last is the live device.
        """
        ref = parse_device_ref(id_or_name)
        if ref.kind is not RefKind.MACHINE_ID:
            records = self.find_machines(ref.value, priority=priority)
            if not records:
                raise DeviceNotFound(ref.value)
            return max(records, key=lambda m: (m.last_seen or datetime.min.replace(tzinfo=UTC), m.id))
        path = f"/api/machines/{path_segment(ref.value)}"
        body = self._session.get_json(Api.MACHINE, path, None, priority, ref.value)
        return parse_machine(body)

    def find_machines(
        self, hostname: str, *, prefix: bool = False, priority: Priority = Priority.INTERACTIVE
    ) -> list[Machine]:
        """Devices whose computerDnsName equals (or, with `prefix`, starts with) `hostname`.

        A prefix can match tens of thousands of records in a large tenant: it asks for `PREFIX_MATCHES` of them
        (one call, no further page), enough to tell one name (with its duplicate records) from several and to
        suggest a few. A name with that many records of its own would hide the others.
        """
        ref = parse_device_ref(hostname)
        literal = odata_literal(ref.value)
        params = {"$filter": f"computerDnsName eq {literal}"}
        if prefix:
            params = {"$filter": f"startswith(computerDnsName,{literal})", "$top": str(PREFIX_MATCHES)}
        records, _ = self._session.get_collection(Api.MACHINES, "/api/machines", params, priority, None)
        return parse_all(records, parse_machine)

    def list_alerts_updated_since(
        self, since: datetime, *, top: int = 10_000, priority: Priority = Priority.BACKGROUND
    ) -> list[Alert]:
        """Every alert in the tenant updated at or after `since` (one call covers all devices)."""
        params = {"$filter": f"lastUpdateTime ge {format_timestamp(since)}", "$top": str(top)}
        records, _ = self._session.get_collection(Api.ALERTS, "/api/alerts", params, priority, None)
        return parse_all(records, parse_alert)

    def update_alert(self, alert_id: str, update: AlertUpdate, *, priority: Priority = Priority.INTERACTIVE) -> Alert:
        """`PATCH /api/alerts/{id}` with the properties and the comment in one call; the alert as it is now.

        Needs `Alert.ReadWrite.All`; the update API has its own budget (100 a minute, 1,500 an hour).
        """
        path = f"/api/alerts/{path_segment(alert_id)}"
        try:
            body = self._session.write_json(Api.ALERT_UPDATE, "PATCH", path, update.mde_body(), priority, alert_id)
        except PermissionDenied as exc:
            raise PermissionDenied(
                f"Defender refused to update the alert: the app needs the application permission {WRITE_PERMISSION}, "
                f"with admin consent (Defender said: {exc.message})",
                permission=WRITE_PERMISSION,
                target=exc.target,
            ) from None
        return parse_alert(body)


WRITE_PERMISSION = "Alert.ReadWrite.All"


def _defender_error(reply: ErrorReply, not_found: str | None) -> DefenderError:
    """What a Defender error answer (other than 429) means."""
    if reply.status == 401:
        return AuthError(
            "Defender rejected the app's token",
            hint="the token does not fit this API: check DEFENDER_CLOUD, DEFENDER_SCOPE and admin consent",
            target=reply.target,
        )
    if reply.status == 403:
        return PermissionDenied(reply.message or "the app lacks a Defender permission", target=reply.target)
    if reply.status == 404 and not_found is not None:
        return DeviceNotFound(not_found, target=reply.target)
    return BadResponse(f"Defender answered {reply.status} {reply.code or ''}".strip(), target=reply.target)
