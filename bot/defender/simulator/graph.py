"""The tenant's Microsoft Graph view: the same alerts as `GET /v1.0/security/alerts_v2` shows them.

The tenant keeps one set of Defender-shaped records; each alert is converted on the way out: Graph's field
names, camelCase enums (a value Graph does not know becomes `unknownFutureValue`; Defender's "UnSpecified"
severity is Graph's `unknown`, an unset classification or determination `unknown`), portal links, comments,
and evidence with one `deviceEvidence` per device (plus a `userEvidence` for the related user). An alert
concerns several devices when a test links more (`SimulatedTenant.link_device`) and, in the built-in data,
for every "Possible lateral movement" alert, which also names the device the movement came from. Defender's
own API still shows the one `machineId` for those.

Strict like Graph (what is refused here is refused there):
- `$filter`: comparisons joined by `and`, on the filterable properties only (assignedTo, classification,
  determination, createdDateTime, lastUpdateDateTime, severity, serviceSource, status); anything else is
  400 BadRequest. Enums compare with eq/ne against a member of the enum ('new', 'inProgress'…), assignedTo
  with eq/ne against a string or null, the two times with eq/ne/gt/ge/lt/le against an unquoted ISO 8601 UTC
  time. Not modelled, so refused here though Graph may accept them: `or`, `not`, `in`, functions, parentheses.
- `$top` is the page size, 0-1,000 (more is 400); without it a page holds `graph_page_size` alerts (default
  1,000, Graph's own page size is undocumented), and never more than that. `$skip` and `$count` work;
  any other system query option is 400 (alerts_v2 documents only $count, $filter, $skip and $top).
- Newest first by createdDateTime. More pages are linked by `@odata.nextLink`, which repeats the query with an
  opaque `$skiptoken` bound to it: a token that was altered, or used with another query, is 400.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from bot.defender.portal import alert_url
from bot.defender.simulator.dataset import AAD_TENANT_ID, Json
from bot.defender.simulator.odata import ApiError, literal, ticks

GRAPH_CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#security/alerts_v2"
PORTAL = "https://security.microsoft.com"
MAX_PAGE = 1000
FUTURE = "unknownFutureValue"
LATERAL_TITLE = "Possible lateral movement using PsExec"

# fmt: off
STATUS = {"unknown", "new", "inProgress", "resolved", FUTURE}
SEVERITY = {"unknown", "informational", "low", "medium", "high", FUTURE}
CLASSIFICATION = {"unknown", "falsePositive", "truePositive", "informationalExpectedActivity", FUTURE}
# Graph's alertDetermination enum (its $metadata). The MDE API spells four of them otherwise (alerts.md).
DETERMINATION = {
    "unknown", "apt", "malware", "securityPersonnel", "securityTesting", "unwantedSoftware", "other",
    "multiStagedAttack", "compromisedAccount", "phishing", "maliciousUserActivity", "notMalicious",
    "notEnoughDataToValidate", "confirmedActivity", "lineOfBusinessApplication", FUTURE,
}
MDE_DETERMINATIONS = {
    "Clean": "notMalicious", "InsufficientData": "notEnoughDataToValidate", "CompromisedUser": "compromisedAccount",
    "ConfirmedUserActivity": "confirmedActivity", "NotAvailable": "unknown",
}
SERVICE_SOURCE = {
    "unknown", "microsoftDefenderForEndpoint", "microsoftDefenderForIdentity", "microsoftDefenderForCloudApps",
    "microsoftDefenderForOffice365", "microsoft365Defender", "azureAdIdentityProtection", "microsoftAppGovernance",
    "dataLossPrevention", FUTURE, "microsoftDefenderForCloud",
}
HEALTH = {"active", "inactive", "impairedCommunication", "noSensorData", "noSensorDataImpairedCommunication",
          "unknown", FUTURE}
RISK = {"none", "informational", "low", "medium", "high", FUTURE}
DETECTION_SOURCES = {
    "WindowsDefenderAtp": "microsoftDefenderForEndpoint", "WindowsDefenderAv": "antivirus",
    "WindowsDefenderSmartScreen": "smartScreen", "CustomerTI": "customTi", "CustomDetection": "customDetection",
    "AutomatedInvestigation": "automatedInvestigation", "ThreatExperts": "microsoftThreatExperts",
}
_ENUM_FIELDS = {"status": STATUS, "severity": SEVERITY, "classification": CLASSIFICATION,
                "determination": DETERMINATION, "serviceSource": SERVICE_SOURCE}
_TIME_FIELDS = {"createdDateTime", "lastUpdateDateTime"}
_TEXT_FIELDS = {"assignedTo"}
_OPTIONS = {"$filter", "$top", "$skip", "$count", "$skiptoken"}
_LITERAL = r"'((?:[^']|'')*)'"
_TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,7})?Z"
_CLAUSE = re.compile(
    rf"(?P<field>[A-Za-z_][\w/]*)\s+(?P<op>eq|ne|ge|gt|le|lt)\s+(?:{_LITERAL}|(?P<ts>{_TIMESTAMP})|(?P<null>null))"
)
_AND = re.compile(r"\s+and\s+")
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq, "ne": operator.ne, "ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt,
}
# fmt: on


def camel(value: object, known: set[str]) -> str:
    """Graph's spelling of a Defender enum value; a value Graph does not know is its `unknownFutureValue`."""
    if not isinstance(value, str) or not value:
        return "unknown" if "unknown" in known else FUTURE
    name = value[0].lower() + value[1:]
    return name if name in known else FUTURE


# -- conversion ------------------------------------------------------------------------------------------------------


def _device_evidence(alert: Json, machine: Json | None, machine_id: str, users: list[Json]) -> Json:
    machine = machine or {"id": machine_id, "computerDnsName": alert.get("computerDnsName")}
    return {
        "@odata.type": "#microsoft.graph.security.deviceEvidence",
        "createdDateTime": alert.get("alertCreationTime"),
        "verdict": "unknown",
        "remediationStatus": "none",
        "remediationStatusDetails": None,
        "roles": [],
        "detailedRoles": ["PrimaryDevice"] if machine_id == alert.get("machineId") else [],
        "tags": list(machine.get("machineTags") or []),
        "firstSeenDateTime": machine.get("firstSeen"),
        "mdeDeviceId": machine_id,
        "azureAdDeviceId": machine.get("aadDeviceId"),
        "deviceDnsName": machine.get("computerDnsName"),
        "osPlatform": machine.get("osPlatform"),
        "osBuild": machine.get("osBuild"),
        "version": machine.get("version"),
        "healthStatus": camel(machine.get("healthStatus"), HEALTH),
        "riskScore": camel(machine.get("riskScore"), RISK),
        "rbacGroupId": machine.get("rbacGroupId"),
        "rbacGroupName": machine.get("rbacGroupName", alert.get("rbacGroupName")),
        "onboardingStatus": "onboarded",
        "defenderAvStatus": "updated",
        "ipInterfaces": [machine["lastIpAddress"]] if machine.get("lastIpAddress") else [],
        "loggedOnUsers": users,
        "vmMetadata": None,
    }


def _user(related: object) -> Json | None:
    if isinstance(related, Mapping) and related.get("userName"):
        return {"accountName": related["userName"], "domainName": related.get("domainName")}
    if isinstance(related, str) and related:
        domain, _, name = related.rpartition("\\")
        return {"accountName": name, "domainName": domain or None}
    return None


def _evidence(alert: Json, machines: Mapping[str, Json], device_ids: list[str]) -> list[Json]:
    user = _user(alert.get("relatedUser"))
    users = [user] if user else []
    evidence = [_device_evidence(alert, machines.get(mid), mid, users) for mid in device_ids]
    if user:
        evidence.append({"@odata.type": "#microsoft.graph.security.userEvidence", "userAccount": user, "roles": []})
    return evidence


def _comments(comments: object) -> list[Json]:
    return [
        {
            "@odata.type": "microsoft.graph.security.alertComment",
            "comment": item.get("comment"),
            "createdByDisplayName": item.get("createdBy"),
            "createdDateTime": item.get("createdTime"),
        }
        for item in (comments if isinstance(comments, list) else [])
        if isinstance(item, Mapping)
    ]


def lateral_peer(alert: Json, machines: list[Json]) -> str | None:
    """The device a built-in lateral-movement alert came from: a fixed other device of the tenant."""
    if alert.get("title") != LATERAL_TITLE:
        return None
    others = [m["id"] for m in machines if m["id"] != alert.get("machineId")]
    digest = int(hashlib.sha256(str(alert["id"]).encode()).hexdigest(), 16)
    return others[digest % len(others)] if others else None


def graph_alert(alert: Json, machines: Mapping[str, Json], device_ids: list[str]) -> Json:
    """One Defender-shaped alert as Graph's `microsoft.graph.security.alert`."""
    incident = alert.get("incidentId")
    mitre = alert.get("mitreTechniques")
    severity = alert.get("severity")
    return {
        "@odata.type": "#microsoft.graph.security.alert",
        "id": alert["id"],
        "providerAlertId": alert["id"],
        "incidentId": None if incident is None else str(incident),
        "status": camel(alert.get("status"), STATUS),
        "severity": "unknown" if severity == "UnSpecified" else camel(severity, SEVERITY),
        "classification": camel(alert.get("classification"), CLASSIFICATION),
        "determination": camel(
            MDE_DETERMINATIONS.get(str(alert.get("determination")), alert.get("determination")), DETERMINATION
        ),
        "serviceSource": "microsoftDefenderForEndpoint",
        "detectionSource": DETECTION_SOURCES.get(str(alert.get("detectionSource")), "unknown"),
        "detectorId": alert.get("detectorId"),
        "tenantId": AAD_TENANT_ID,
        "title": alert.get("title"),
        "description": alert.get("description"),
        "recommendedActions": "",
        "category": alert.get("category"),
        "assignedTo": alert.get("assignedTo"),
        "alertWebUrl": alert_url(PORTAL, str(alert["id"]), AAD_TENANT_ID),
        "incidentWebUrl": None if incident is None else f"{PORTAL}/incidents/{incident}?tid={AAD_TENANT_ID}",
        "actorDisplayName": None,
        "threatDisplayName": alert.get("threatName"),
        "threatFamilyName": alert.get("threatFamilyName"),
        "mitreTechniques": [mitre] if isinstance(mitre, str) else list(mitre or []),
        "createdDateTime": alert.get("alertCreationTime"),
        "lastUpdateDateTime": alert.get("lastUpdateTime"),
        "resolvedDateTime": alert.get("resolvedTime"),
        "firstActivityDateTime": alert.get("firstEventTime"),
        "lastActivityDateTime": alert.get("lastEventTime"),
        "comments": _comments(alert.get("comments")),
        "evidence": _evidence(alert, machines, device_ids),
        "systemTags": [],
    }


def graph_alerts(
    alerts: list[Json], machines: list[Json], links: Mapping[str, list[str]], more: Mapping[str, Json] | None = None
) -> list[Json]:
    """Every alert as Graph shows it, with a deviceEvidence for its device, its lateral peer and linked devices.

    Lateral peers are among `machines`; `more` holds further records by id (a fleet's), for evidence details only.
    """
    by_id = {**(more or {}), **{m["id"]: m for m in machines}}
    converted = []
    for alert in alerts:
        peer = lateral_peer(alert, machines)
        extra = [*([peer] if peer else []), *links.get(alert["id"], [])]
        converted.append(graph_alert(alert, by_id, list(dict.fromkeys([alert["machineId"], *extra]))))
    return converted


# -- alerts_v2 -------------------------------------------------------------------------------------------------------


def _bad(message: str) -> ApiError:
    return ApiError(400, message, "BadRequest")


def _predicate(field: str, op: str, match: re.Match[str]) -> Callable[[Json], bool]:
    compare = _COMPARE[op]
    text, stamp, null = match[3], match["ts"], match["null"]
    if field in _ENUM_FIELDS and op in ("eq", "ne") and text is not None:
        value = literal(text)
        if value not in _ENUM_FIELDS[field]:
            raise _bad(f"The value '{value}' is not a valid member of the enum of property '{field}'.")
        return lambda alert: bool(compare(alert.get(field), value))
    if field in _TEXT_FIELDS and op in ("eq", "ne") and (text is not None or null):
        wanted = None if null else literal(text)
        return lambda alert: bool(compare(alert.get(field), wanted))
    if field in _TIME_FIELDS and stamp is not None:
        limit = ticks(stamp)
        return lambda alert: (at := ticks(alert.get(field))) is not None and bool(compare(at, limit))
    if field not in {*_ENUM_FIELDS, *_TEXT_FIELDS, *_TIME_FIELDS}:
        raise _bad(f"Invalid filter clause: the property '{field}' does not support filtering.")
    raise _bad(f"Invalid filter clause: '{match.group(0)}' compares '{field}' in a way it does not support.")


def filter_predicates(expression: str) -> list[Callable[[Json], bool]]:
    """`clause and clause …` over the filterable properties; anything else is 400 BadRequest."""
    predicates: list[Callable[[Json], bool]] = []
    position = 0
    expression = expression.strip()
    while True:
        match = _CLAUSE.match(expression, position)
        if not match:
            raise _bad(f"Invalid filter clause: syntax error at position {position} in '{expression}'.")
        predicates.append(_predicate(match["field"], match["op"], match))
        if match.end() == len(expression):
            return predicates
        separator = _AND.match(expression, match.end())
        if not separator:
            raise _bad(f"Invalid filter clause: syntax error at position {match.end()} in '{expression}'.")
        position = separator.end()


def _number(params: httpx.QueryParams, name: str, default: int, maximum: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", raw):
        raise _bad(f"Invalid value '{raw}' for query option {name}.")
    if int(raw) > maximum:
        raise _bad(f"The limit of '{maximum}' for Top query has been exceeded. The value from the request is '{raw}'.")
    return int(raw)


def _fingerprint(params: httpx.QueryParams) -> str:
    query = "\x00".join(f"{key}={params.get(key) or ''}" for key in sorted(_OPTIONS - {"$skiptoken"}))
    return hashlib.sha256(query.encode()).hexdigest()[:16]


def _skiptoken(offset: int, fingerprint: str) -> str:
    raw = json.dumps({"o": offset, "q": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _offset(params: httpx.QueryParams) -> int:
    token = params.get("$skiptoken")
    if token is None:
        return _number(params, "$skip", 0, 10**9)
    try:
        state = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset, fingerprint = state["o"], state["q"]
    except (ValueError, binascii.Error, TypeError, KeyError):
        raise _bad("The $skiptoken is invalid.") from None
    if not isinstance(offset, int) or offset < 0 or fingerprint != _fingerprint(params):
        raise _bad("The $skiptoken is invalid for this query.")
    return offset


def alerts_page(url: httpx.URL, alerts: list[Json], page_size: int) -> httpx.Response:
    """One page of alerts_v2 for `url`: filtered, newest first, linked to the next page."""
    params = url.params
    for option in params:
        if option.startswith("$") and option not in _OPTIONS:
            raise _bad(f"Query option '{option}' is not allowed. alerts_v2 supports $count, $filter, $skip, $top.")
    if (expression := params.get("$filter")) is not None:
        predicates = filter_predicates(expression)
        alerts = [a for a in alerts if all(p(a) for p in predicates)]
    alerts = sorted(alerts, key=lambda a: (ticks(a.get("createdDateTime")) or 0, str(a["id"])), reverse=True)
    size = min(_number(params, "$top", page_size, MAX_PAGE), page_size)
    offset = _offset(params)
    end = offset + size
    body: Json = {"@odata.context": GRAPH_CONTEXT}
    if params.get("$count") == "true":
        body["@odata.count"] = len(alerts)
    body["value"] = alerts[offset:end]
    if size and end < len(alerts):
        body["@odata.nextLink"] = str(url.copy_set_param("$skiptoken", _skiptoken(end, _fingerprint(params))))
    return httpx.Response(200, json=body)
