"""Alert writes, as Defender for Endpoint and Microsoft Graph take them.

- Defender for Endpoint: `PATCH /api/alerts/{id}` with any of status, assignedTo, classification, determination
  and comment (application permission `Alert.ReadWrite.All`; 100 calls a minute and 1,500 an hour of its own).
  Answers 200 with the alert as it is after the write.
- Microsoft Graph: `PATCH /v1.0/security/alerts_v2/{id}` (status, assignedTo, classification, determination;
  answers the updated `security.alert`) and `POST /v1.0/security/alerts_v2/{id}/comments` with an
  `alertComment` (answers the alert's comments); both need `SecurityAlert.ReadWrite.All`.

Strict like the real APIs: an unknown property, an enum value the API does not spell that way, a determination
that does not go with the classification, or an empty comment is 400; an unknown alert is 404; a token without
the write permission is 403. The pairs are written out here from Microsoft's pages, independently of the bot's
own table, so a mistake in either shows up as a refusal in tests.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from bot.defender.simulator.dataset import Json, iso
from bot.defender.simulator.odata import ApiError

MDE_UPDATE = "alert-update"
GRAPH_ALERT = "graph-alert"
GRAPH_COMMENTS = "graph-alert-comments"
GRAPH_WRITES = frozenset({GRAPH_ALERT, GRAPH_COMMENTS})
WRITE_KINDS = frozenset({MDE_UPDATE, *GRAPH_WRITES})
MDE_WRITE_ROLE = "Alert.ReadWrite.All"
GRAPH_WRITE_ROLE = "SecurityAlert.ReadWrite.All"
APP_NAME = "device-alerts"  # how an application's writes are signed in the alert's comments
HOUR_LIMIT = 1500  # Defender for Endpoint's update API, per hour (its minute limit is the tenant's window)
MAX_COMMENT = 30_000
MDE_CONTEXT = "https://api.security.microsoft.com/api/$metadata#Alerts/$entity"

# fmt: off
MDE_PAIRS = {
    "TruePositive": {"MultiStagedAttack", "MaliciousUserActivity", "CompromisedUser", "Malware", "Phishing",
                     "UnwantedSoftware", "Other"},
    "InformationalExpectedActivity": {"SecurityTesting", "LineOfBusinessApplication", "ConfirmedUserActivity", "Other"},
    "FalsePositive": {"Clean", "InsufficientData", "Other"},
}
GRAPH_PAIRS = {
    "truePositive": {"multiStagedAttack", "maliciousUserActivity", "compromisedAccount", "malware", "phishing",
                     "unwantedSoftware", "other"},
    "informationalExpectedActivity": {"securityTesting", "lineOfBusinessApplication", "confirmedActivity",
                                      "other"},
    "falsePositive": {"notMalicious", "notEnoughDataToValidate", "other"},
}
# Graph's names where the stored (Defender-shaped) record spells a determination differently.
GRAPH_TO_MDE = {"compromisedAccount": "CompromisedUser", "confirmedActivity": "ConfirmedUserActivity",
                "notMalicious": "Clean", "notEnoughDataToValidate": "InsufficientData"}
MDE_STATUS = {"New", "InProgress", "Resolved"}
GRAPH_STATUS = {"new": "New", "inProgress": "InProgress", "resolved": "Resolved"}
# fmt: on


def _bad(message: str, graph: bool) -> ApiError:
    return ApiError(400, message, "BadRequest" if graph else "InvalidInput")


def _body(request: httpx.Request, graph: bool) -> Json:
    try:
        body = json.loads(request.content or b"null")
    except ValueError:
        raise _bad("The request body is not valid JSON.", graph) from None
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", graph)
    return body


def _verdict(body: Json, pairs: dict[str, set[str]], graph: bool) -> tuple[str, str] | None:
    classification, determination = body.get("classification"), body.get("determination")
    if classification is None and determination is None:
        return None
    if classification not in pairs:
        raise _bad(f"'{classification}' is not a valid value for classification.", graph)
    if determination not in pairs[classification]:
        raise _bad(f"Determination '{determination}' is not valid with classification '{classification}'.", graph)
    return classification, determination


def _text(body: Json, key: str, graph: bool, *, limit: int = 320) -> str | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise _bad(f"'{key}' must be a string of at most {limit} characters.", graph)
    return value


class AlertWrites:
    """The write side of a simulated tenant: permissions granted, the hourly window, and the changes themselves.

    The tenant calls `serve` under its own lock, after its per-minute window for the route has admitted it.
    """

    def __init__(self, clock: Callable[[], float], now: Callable[[], datetime]) -> None:
        self.roles = {MDE_WRITE_ROLE, GRAPH_WRITE_ROLE}  # take one away for the 403 a real tenant gives
        self.hour_limit = HOUR_LIMIT
        self._clock = clock
        self._now = now
        self._hour: deque[float] = deque()
        self.writes: list[tuple[str, str, Json]] = []  # (route, alert id, body): what tests count

    def answer(
        self, kind: str, alert_id: str, request: httpx.Request, alerts: list[Json], graph_view: Callable[[Json], Json]
    ) -> httpx.Response:
        """Apply one write and answer it in the API's shape (`graph_view`: the stored alert as Graph shows it)."""
        alert = self._serve(kind, alert_id, request, alerts)
        if kind == MDE_UPDATE:
            return httpx.Response(200, json={"@odata.context": MDE_CONTEXT, **alert})
        shown = graph_view(alert)
        return httpx.Response(200, json=comments_answer(shown["comments"]) if kind == GRAPH_COMMENTS else shown)

    def _serve(self, kind: str, alert_id: str, request: httpx.Request, alerts: list[Json]) -> Json:
        graph = kind != MDE_UPDATE
        method = "POST" if kind == GRAPH_COMMENTS else "PATCH"
        if request.method != method:
            raise ApiError(405, f"{request.method} is not allowed here", headers={"Allow": method})
        role = GRAPH_WRITE_ROLE if graph else MDE_WRITE_ROLE
        if role not in self.roles:
            message = (
                "Insufficient privileges to complete the operation."
                if graph
                else f"Missing application roles. API required roles: {MDE_WRITE_ROLE}."
            )
            raise ApiError(403, message, "Forbidden")
        if not graph:
            self._admit_hour()
        alert = next((a for a in alerts if a["id"] == alert_id), None)
        if alert is None:
            raise ApiError(404, f"Alert {alert_id} was not found", "NotFound" if graph else None)
        body = _body(request, graph)
        if kind == GRAPH_COMMENTS:
            self._comment(alert, body)
        elif graph:
            self._apply(alert, self._graph_fields(body), None)
        else:
            self._apply(alert, *self._mde_fields(body))
        self.writes.append((kind, alert_id, body))
        return alert

    def _admit_hour(self) -> None:
        now = self._clock()
        while self._hour and self._hour[0] <= now - 3600:
            self._hour.popleft()
        if len(self._hour) >= self.hour_limit:
            wait = max(1, math.ceil(self._hour[0] + 3600 - now))
            raise ApiError(429, f"Over {self.hour_limit} calls per hour", headers={"Retry-After": str(wait)})
        self._hour.append(now)

    @staticmethod
    def _mde_fields(body: Json) -> tuple[Json, str | None]:
        unknown = set(body) - {"status", "assignedTo", "classification", "determination", "comment"}
        if unknown:
            raise _bad(f"Unknown properties: {', '.join(sorted(unknown))}", False)
        fields: Json = {}
        if "status" in body:
            if body["status"] not in MDE_STATUS:
                raise _bad(f"'{body['status']}' is not a valid value for status.", False)
            fields["status"] = body["status"]
        if (assignee := _text(body, "assignedTo", False)) is not None:
            fields["assignedTo"] = assignee
        if (verdict := _verdict(body, MDE_PAIRS, False)) is not None:
            fields["classification"], fields["determination"] = verdict
        comment = _text(body, "comment", False, limit=MAX_COMMENT)
        if not fields and not comment:
            raise _bad("Nothing to update: set a property or a comment.", False)
        return fields, comment

    @staticmethod
    def _graph_fields(body: Json) -> Json:
        unknown = {key for key in body if not key.startswith("@odata.")} - {
            "status", "assignedTo", "classification", "determination",
        }  # fmt: skip
        if unknown:
            raise _bad(f"Invalid properties for security.alert: {', '.join(sorted(unknown))}", True)
        fields: Json = {}
        if "status" in body:
            if body["status"] not in GRAPH_STATUS:
                raise _bad(
                    f"The value '{body['status']}' is not a valid member of the enum of property 'status'.", True
                )
            fields["status"] = GRAPH_STATUS[body["status"]]
        if (assignee := _text(body, "assignedTo", True)) is not None:
            fields["assignedTo"] = assignee
        if (verdict := _verdict(body, GRAPH_PAIRS, True)) is not None:
            classification, determination = verdict
            fields["classification"] = classification[0].upper() + classification[1:]
            fields["determination"] = GRAPH_TO_MDE.get(determination, determination[0].upper() + determination[1:])
        if not fields:
            raise _bad("The request body sets no property of security.alert.", True)
        return fields

    def _apply(self, alert: Json, fields: Json, comment: str | None) -> None:
        stamp = iso(self._now())
        if fields.get("status") == "Resolved" and alert.get("status") != "Resolved":
            alert["resolvedTime"] = stamp
        elif "status" in fields and fields["status"] != "Resolved":
            alert["resolvedTime"] = None
        alert.update(fields)
        if comment:
            alert["comments"] = [*alert.get("comments", []), self._signed(comment, stamp)]
        alert["lastUpdateTime"] = stamp

    def _comment(self, alert: Json, body: Json) -> None:
        if body.get("@odata.type") not in (
            None,
            "microsoft.graph.security.alertComment",
            "#microsoft.graph.security.alertComment",
        ):
            raise _bad("The comment must be a microsoft.graph.security.alertComment.", True)
        comment = _text(body, "comment", True, limit=MAX_COMMENT)
        if not comment or not comment.strip():
            raise _bad("The comment must not be empty.", True)
        stamp = iso(self._now())
        alert["comments"] = [*alert.get("comments", []), self._signed(comment, stamp)]
        alert["lastUpdateTime"] = stamp

    @staticmethod
    def _signed(comment: str, stamp: str) -> Json:
        return {"comment": comment, "createdBy": APP_NAME, "createdTime": stamp}


def comments_answer(comments: list[Json]) -> dict[str, Any]:
    """Graph's answer to a new comment: every comment of the alert."""
    return {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(microsoft.graph.security.alertComment)",
            "value": comments}  # fmt: skip
