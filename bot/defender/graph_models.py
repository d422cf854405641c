"""Microsoft Graph security JSON mapped into the same typed models as Defender's (`bot.defender.models`).

Graph's alert (`microsoft.graph.security.alert`) names fields differently from Defender's, spells enums in
camelCase and keeps the device only in its evidence: one `deviceEvidence` item per device. An alert with
several of them concerns each of those devices; it stays one `Alert` (one id) whose `devices` lists them all,
in evidence order, and whose `machine_id` / `computer_dns_name` / `rbac_group_name` repeat the first.

Enums map onto the Defender members: a value neither side knows, and Graph's `unknownFutureValue` sentinel,
become UNKNOWN. Graph's `unknown` severity is Defender's "UnSpecified"; its `unknown` classification and
determination mean "not set yet", which is None here as in Defender's JSON. Determinations take the MDE API's
spelling (`malware` → "Malware"; `notMalicious` → "Clean", as the MDE API calls it).

Hunting rows (`DeviceInfo`) become `Machine`s too: the table has no first-seen time, risk score, internal IP
or device-group id, so those stay None.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bot.defender.errors import BadResponse
from bot.defender.evidence import parse_graph_evidence
from bot.defender.models import (
    Alert,
    AlertDevice,
    AlertStatus,
    Classification,
    HealthStatus,
    Machine,
    RelatedUser,
    RiskLevel,
    Severity,
    json_int,
    json_text,
    optional_enum,
    parse_comments,
    parse_timestamp,
    required_enum,
    string_list,
)
from bot.defender.updates import DETERMINATIONS

DEVICE_EVIDENCE = "#microsoft.graph.security.deviceEvidence"
USER_EVIDENCE = "#microsoft.graph.security.userEvidence"
UNKNOWN_FUTURE_VALUE = "unknownFutureValue"


def _evidence(data: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    """The evidence items of one `@odata.type` (compared without the leading '#', case-insensitively)."""
    items = data.get("evidence")
    if not isinstance(items, list):
        return []
    wanted = kind.lstrip("#").casefold()
    return [
        item
        for item in items
        if isinstance(item, Mapping) and str(item.get("@odata.type") or "").lstrip("#").casefold() == wanted
    ]


def _severity(value: object) -> Severity:
    if isinstance(value, str) and value.casefold() == "unknown":
        return Severity.UNSPECIFIED  # Graph's name for Defender's "UnSpecified"
    return Severity.parse(value)


def _classification(value: object) -> Classification | None:
    if value is None or value == "" or (isinstance(value, str) and value.casefold() == "unknown"):
        return None  # "the alert isn't classified yet"
    return Classification.parse(value)


# Graph's names for the determinations, in the MDE API's spelling (one table: `updates.DETERMINATIONS`), so both
# backends say the same.
_MDE_DETERMINATIONS = {d.graph: d.mde for kinds in DETERMINATIONS.values() for d in kinds}


def _determination(value: object) -> str | None:
    if not isinstance(value, str) or not value or value.casefold() == "unknown":
        return None  # "no determination value was set yet"
    if value.casefold() == UNKNOWN_FUTURE_VALUE.casefold():
        return "Unknown"
    return _MDE_DETERMINATIONS.get(value, value[0].upper() + value[1:])


def _alert_device(evidence: Mapping[str, Any]) -> AlertDevice | None:
    machine_id = (json_text(evidence, "mdeDeviceId") or "").lower()
    if not machine_id:
        return None  # a device Defender for Endpoint does not manage: no id the bot could look up
    return AlertDevice(machine_id, json_text(evidence, "deviceDnsName"), json_text(evidence, "rbacGroupName"))


def _related_user(data: Mapping[str, Any]) -> RelatedUser | None:
    for evidence in _evidence(data, USER_EVIDENCE):
        account = evidence.get("userAccount")
        if isinstance(account, Mapping) and (name := json_text(account, "accountName")):
            return RelatedUser(name, json_text(account, "domainName"))
    return None


def _require(raw: object, entity: str, key: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise BadResponse(f"expected a JSON object for {entity}, got {type(raw).__name__}")
    if not json_text(raw, key):
        raise BadResponse(f"{entity} record without {key}")
    return raw


def parse_graph_alert(raw: object) -> Alert:
    """Build an `Alert` from one Graph `security.alert`; only a missing id is fatal (`BadResponse`)."""
    data = _require(raw, "alert", "id")
    devices = tuple(d for e in _evidence(data, DEVICE_EVIDENCE) if (d := _alert_device(e)) is not None)
    first = devices[0] if devices else None
    return Alert(
        id=str(data["id"]),
        title=json_text(data, "title") or "(untitled alert)",
        description=json_text(data, "description") or "",
        severity=_severity(data.get("severity")),
        status=required_enum(AlertStatus, data, "status"),
        classification=_classification(data.get("classification")),
        determination=_determination(data.get("determination")),
        investigation_state=None,  # not part of Graph's alert
        category=json_text(data, "category"),
        detection_source=json_text(data, "detectionSource"),
        created=parse_timestamp(data.get("createdDateTime")),
        first_event=parse_timestamp(data.get("firstActivityDateTime")),
        last_event=parse_timestamp(data.get("lastActivityDateTime")),
        last_update=parse_timestamp(data.get("lastUpdateDateTime")),
        resolved=parse_timestamp(data.get("resolvedDateTime")),
        incident_id=json_int(data, "incidentId"),
        investigation_id=None,
        assigned_to=json_text(data, "assignedTo"),
        machine_id=first.machine_id if first else None,
        computer_dns_name=first.computer_dns_name if first else None,
        rbac_group_name=first.rbac_group_name if first else None,
        threat_family_name=json_text(data, "threatFamilyName"),
        threat_name=json_text(data, "threatDisplayName"),
        mitre_techniques=string_list(data.get("mitreTechniques")),
        related_user=_related_user(data),
        comments=parse_comments(data.get("comments"), author="createdByDisplayName", created="createdDateTime"),
        devices=devices,
        alert_web_url=json_text(data, "alertWebUrl"),
        incident_web_url=json_text(data, "incidentWebUrl"),
        recommended_actions=json_text(data, "recommendedActions"),
        evidence=parse_graph_evidence(data.get("evidence")),
    )


def evidence_machines(raw: object) -> list[Machine]:
    """The devices of one Graph alert's evidence, as they were when the alert was last updated."""
    if not isinstance(raw, Mapping):
        return []
    return [parse_device_evidence(e) for e in _evidence(raw, DEVICE_EVIDENCE) if json_text(e, "mdeDeviceId")]


def parse_device_evidence(raw: object) -> Machine:
    """Build a `Machine` from one `deviceEvidence` item (no last-seen time or exposure level in it)."""
    data = _require(raw, "deviceEvidence", "mdeDeviceId")
    addresses = string_list(data.get("ipInterfaces"))
    return Machine(
        id=str(data["mdeDeviceId"]).lower(),
        computer_dns_name=json_text(data, "deviceDnsName"),
        first_seen=parse_timestamp(data.get("firstSeenDateTime")),
        last_seen=None,
        os_platform=json_text(data, "osPlatform"),
        os_version=json_text(data, "version"),
        os_build=json_text(data, "osBuild"),
        last_ip_address=addresses[0] if addresses else None,
        health_status=required_enum(HealthStatus, data, "healthStatus"),
        onboarding_status=json_text(data, "onboardingStatus"),
        rbac_group_name=json_text(data, "rbacGroupName"),
        rbac_group_id=json_int(data, "rbacGroupId"),
        risk_score=optional_enum(RiskLevel, data, "riskScore"),
        exposure_level=None,
        device_value=None,
        machine_tags=string_list(data.get("tags")),
        aad_device_id=json_text(data, "azureAdDeviceId"),
    )


def _tags(value: object) -> tuple[str, ...]:
    """Hunting returns dynamic columns as JSON text (`["a","b"]`); a list or plain text is accepted too."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            return ()
    return string_list(value)


def parse_device_info(raw: object) -> Machine:
    """Build a `Machine` from one `DeviceInfo` hunting row; a row without DeviceId is `BadResponse`."""
    data = _require(raw, "DeviceInfo row", "DeviceId")
    return Machine(
        id=str(data["DeviceId"]).lower(),
        computer_dns_name=json_text(data, "DeviceName"),
        first_seen=None,
        last_seen=parse_timestamp(data.get("Timestamp")),
        os_platform=json_text(data, "OSPlatform"),
        os_version=json_text(data, "OSVersion"),
        os_build=json_text(data, "OSBuild"),
        last_ip_address=None,
        health_status=required_enum(HealthStatus, data, "SensorHealthState"),
        onboarding_status=json_text(data, "OnboardingStatus"),
        rbac_group_name=json_text(data, "MachineGroup"),
        rbac_group_id=None,
        risk_score=None,
        exposure_level=optional_enum(RiskLevel, data, "ExposureLevel"),
        device_value=json_text(data, "AssetValue"),
        machine_tags=tuple(dict.fromkeys(_tags(data.get("DeviceManualTags")) + _tags(data.get("DeviceDynamicTags")))),
        aad_device_id=json_text(data, "AadDeviceId"),
    )
