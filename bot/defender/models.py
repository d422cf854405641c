"""Typed, immutable views of Defender's Alert and Machine entities, parsed once at the edge.

Defender's JSON drifts: enum values appear and disappear, documented strings come back as lists or
objects, timestamps carry 0-7 fractional digits. Parsing here tolerates all of it, so nothing past the
client ever touches a raw dict or breaks on a value it has not seen before.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

from bot.defender.errors import BadResponse
from bot.defender.evidence import Evidence, parse_mde_evidence


class _TolerantEnum(enum.StrEnum):
    """A string enum whose parser maps unseen values to UNKNOWN instead of failing."""

    @classmethod
    def parse(cls, value: object) -> Self:
        if isinstance(value, str):
            folded = value.replace("_", "").replace("-", "").replace(" ", "").casefold()
            for member in cls:
                if member.value.casefold() == folded:
                    return member
        return cls["UNKNOWN"]


class Severity(_TolerantEnum):
    UNSPECIFIED = "UnSpecified"
    INFORMATIONAL = "Informational"
    LOW = "Low"
    MEDIUM = "Medium"
    HIGH = "High"
    UNKNOWN = "Unknown"

    @property
    def rank(self) -> int:
        """Higher is more severe; unknown values sort with unspecified ones."""
        return _SEVERITY_RANK[self]

    @property
    def label(self) -> str:
        return "Unspecified" if self is Severity.UNSPECIFIED else self.value


_SEVERITY_RANK = {
    Severity.HIGH: 4,
    Severity.MEDIUM: 3,
    Severity.LOW: 2,
    Severity.INFORMATIONAL: 1,
    Severity.UNSPECIFIED: 0,
    Severity.UNKNOWN: 0,
}


class AlertStatus(_TolerantEnum):
    NEW = "New"
    IN_PROGRESS = "InProgress"
    RESOLVED = "Resolved"
    UNKNOWN = "Unknown"

    @property
    def label(self) -> str:
        return "In progress" if self is AlertStatus.IN_PROGRESS else self.value


class Classification(_TolerantEnum):
    TRUE_POSITIVE = "TruePositive"
    INFORMATIONAL_EXPECTED_ACTIVITY = "InformationalExpectedActivity"
    FALSE_POSITIVE = "FalsePositive"
    UNKNOWN = "Unknown"


class InvestigationState(_TolerantEnum):
    TERMINATED = "Terminated"
    SUCCESSFULLY_REMEDIATED = "SuccessfullyRemediated"
    BENIGN = "Benign"
    FAILED = "Failed"
    PARTIALLY_REMEDIATED = "PartiallyRemediated"
    RUNNING = "Running"
    PENDING_APPROVAL = "PendingApproval"
    PENDING_RESOURCE = "PendingResource"
    PARTIALLY_INVESTIGATED = "PartiallyInvestigated"
    TERMINATED_BY_USER = "TerminatedByUser"
    TERMINATED_BY_SYSTEM = "TerminatedBySystem"
    QUEUED = "Queued"
    INNER_FAILURE = "InnerFailure"
    PREEXISTING_ALERT = "PreexistingAlert"
    UNSUPPORTED_OS = "UnsupportedOs"
    UNSUPPORTED_ALERT_TYPE = "UnsupportedAlertType"
    SUPPRESSED_ALERT = "SuppressedAlert"
    UNKNOWN = "Unknown"


class HealthStatus(_TolerantEnum):
    ACTIVE = "Active"
    INACTIVE = "Inactive"
    IMPAIRED_COMMUNICATION = "ImpairedCommunication"
    NO_SENSOR_DATA = "NoSensorData"
    NO_SENSOR_DATA_IMPAIRED_COMMUNICATION = "NoSensorDataImpairedCommunication"
    UNKNOWN = "Unknown"


class RiskLevel(_TolerantEnum):
    """Shared by a machine's riskScore and exposureLevel."""

    NONE = "None"
    INFORMATIONAL = "Informational"
    LOW = "Low"
    MEDIUM = "Medium"
    HIGH = "High"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class RelatedUser:
    user_name: str
    domain_name: str | None = None

    def __str__(self) -> str:
        return f"{self.domain_name}\\{self.user_name}" if self.domain_name else self.user_name


@dataclass(frozen=True, slots=True)
class Comment:
    comment: str
    created_by: str | None
    created_time: datetime | None


@dataclass(frozen=True, slots=True)
class AlertDevice:
    """One device an alert concerns (Graph: one `deviceEvidence` item)."""

    machine_id: str
    computer_dns_name: str | None
    rbac_group_name: str | None


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    title: str
    description: str
    severity: Severity
    status: AlertStatus
    classification: Classification | None
    determination: str | None
    investigation_state: InvestigationState | None
    category: str | None
    detection_source: str | None
    created: datetime | None
    first_event: datetime | None
    last_event: datetime | None
    last_update: datetime | None
    resolved: datetime | None
    incident_id: int | None
    investigation_id: int | None
    assigned_to: str | None
    machine_id: str | None
    computer_dns_name: str | None
    rbac_group_name: str | None
    threat_family_name: str | None
    threat_name: str | None
    mitre_techniques: tuple[str, ...]
    related_user: RelatedUser | None
    comments: tuple[Comment, ...]
    # Graph only (Defender's alerts leave them empty). `devices`: every device in the alert's evidence, in
    # evidence order; `machine_id` and its neighbours above repeat the first of them.
    devices: tuple[AlertDevice, ...] = ()
    alert_web_url: str | None = None
    incident_web_url: str | None = None
    recommended_actions: str | None = None  # Graph's `recommendedActions`; Defender's alerts have none
    evidence: tuple[Evidence, ...] = ()  # files, processes, IPs, URLs, users; Defender's only with $expand=evidence

    @property
    def machine_ids(self) -> tuple[str, ...]:
        """Every device the alert concerns: the evidence's devices (Graph), else its one `machine_id` (Defender)."""
        if self.devices:
            return tuple(dict.fromkeys(device.machine_id for device in self.devices))
        return (self.machine_id,) if self.machine_id else ()

    @property
    def last_activity(self) -> datetime | None:
        """The most recent thing that happened to the alert: an update, an event or its creation."""
        moments = [t for t in (self.last_update, self.last_event, self.created) if t is not None]
        return max(moments) if moments else None

    @property
    def is_open(self) -> bool:
        return self.status is not AlertStatus.RESOLVED


@dataclass(frozen=True, slots=True)
class Machine:
    id: str
    computer_dns_name: str | None
    first_seen: datetime | None
    last_seen: datetime | None
    os_platform: str | None
    os_version: str | None
    os_build: str | None
    last_ip_address: str | None
    health_status: HealthStatus
    onboarding_status: str | None
    rbac_group_name: str | None
    rbac_group_id: int | None
    risk_score: RiskLevel | None
    exposure_level: RiskLevel | None
    device_value: str | None
    machine_tags: tuple[str, ...]
    aad_device_id: str | None

    @property
    def display_name(self) -> str:
        return self.computer_dns_name or self.id


_TIMESTAMP = re.compile(
    r"(?P<base>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?)(?:\.(?P<frac>\d+))?(?P<tz>Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)


def parse_timestamp(value: object) -> datetime | None:
    """Parse Defender's ISO-8601 timestamps (0-7 fractional digits, `Z`) into aware UTC datetimes.

    Missing, null or unparseable values become None: a bad timestamp must not hide the alert.
    """
    if not isinstance(value, str):
        return None
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        return None
    frac = (match["frac"] or "")[:6]
    tz = match["tz"] or "Z"
    text = match["base"] + (f".{frac.ljust(6, '0')}" if frac else "") + ("+00:00" if tz.upper() == "Z" else tz)
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError):  # impossible dates, or offsets that push past year 1 or 9999
        return None


def format_timestamp(moment: datetime) -> str:
    """Format a datetime the way Defender's OData filters accept it (UTC, seconds, `Z`)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_text(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text or None


_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only: str.isdigit() also accepts '²' and '①'


def json_int(raw: Mapping[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value)
    return None


_E = TypeVar("_E", bound=_TolerantEnum)


def optional_enum(enum_type: type[_E], raw: Mapping[str, Any], key: str) -> _E | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    return enum_type.parse(value)


def required_enum(enum_type: type[_E], raw: Mapping[str, Any], key: str) -> _E:
    return enum_type.parse(raw.get(key))


def string_list(value: object) -> tuple[str, ...]:
    """Accept a list of strings, a single (possibly comma-separated) string, or nothing."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list):
        return tuple(str(item) for item in value if item is not None and str(item))
    return ()


def _related_user(value: object) -> RelatedUser | None:
    if isinstance(value, str):
        return RelatedUser(value) if value else None
    if isinstance(value, Mapping):
        user = json_text(value, "userName")
        return RelatedUser(user, json_text(value, "domainName")) if user else None
    return None


def parse_comments(value: object, *, author: str = "createdBy", created: str = "createdTime") -> tuple[Comment, ...]:
    """An alert's comments; Graph names the author and time fields differently (`author=`, `created=`)."""
    if not isinstance(value, list):
        return ()
    return tuple(
        Comment(
            comment=json_text(item, "comment") or "",
            created_by=json_text(item, author),
            created_time=parse_timestamp(item.get(created)),
        )
        for item in value
        if isinstance(item, Mapping)
    )


def _require_id(raw: object, entity: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise BadResponse(f"expected a JSON object for {entity}, got {type(raw).__name__}")
    if not json_text(raw, "id"):
        raise BadResponse(f"{entity} record without an id")
    return raw


def parse_alert(raw: object) -> Alert:
    """Build an `Alert` from one Defender JSON record; only a missing id is fatal (`BadResponse`)."""
    data = _require_id(raw, "alert")
    return Alert(
        id=str(data["id"]),
        title=json_text(data, "title") or "(untitled alert)",
        description=json_text(data, "description") or "",
        severity=required_enum(Severity, data, "severity"),
        status=required_enum(AlertStatus, data, "status"),
        classification=optional_enum(Classification, data, "classification"),
        determination=json_text(data, "determination"),
        investigation_state=optional_enum(InvestigationState, data, "investigationState"),
        category=json_text(data, "category"),
        detection_source=json_text(data, "detectionSource"),
        created=parse_timestamp(data.get("alertCreationTime")),
        first_event=parse_timestamp(data.get("firstEventTime")),
        last_event=parse_timestamp(data.get("lastEventTime")),
        last_update=parse_timestamp(data.get("lastUpdateTime")),
        resolved=parse_timestamp(data.get("resolvedTime")),
        incident_id=json_int(data, "incidentId"),
        investigation_id=json_int(data, "investigationId"),
        assigned_to=json_text(data, "assignedTo"),
        machine_id=(json_text(data, "machineId") or "").lower() or None,
        computer_dns_name=json_text(data, "computerDnsName"),
        rbac_group_name=json_text(data, "rbacGroupName"),
        threat_family_name=json_text(data, "threatFamilyName"),
        threat_name=json_text(data, "threatName"),
        mitre_techniques=string_list(data.get("mitreTechniques")),
        related_user=_related_user(data.get("relatedUser")),
        comments=parse_comments(data.get("comments")),
        evidence=parse_mde_evidence(data.get("evidence")),
    )


def parse_machine(raw: object) -> Machine:
    """Build a `Machine` from one Defender JSON record; only a missing id is fatal (`BadResponse`)."""
    data = _require_id(raw, "machine")
    return Machine(
        id=str(data["id"]).lower(),
        computer_dns_name=json_text(data, "computerDnsName"),
        first_seen=parse_timestamp(data.get("firstSeen")),
        last_seen=parse_timestamp(data.get("lastSeen")),
        os_platform=json_text(data, "osPlatform"),
        os_version=json_text(data, "osVersion") or json_text(data, "version"),
        os_build=json_text(data, "osBuild"),
        last_ip_address=json_text(data, "lastIpAddress"),
        health_status=required_enum(HealthStatus, data, "healthStatus"),
        onboarding_status=json_text(data, "onboardingStatus"),
        rbac_group_name=json_text(data, "rbacGroupName"),
        rbac_group_id=json_int(data, "rbacGroupId"),
        risk_score=optional_enum(RiskLevel, data, "riskScore"),
        exposure_level=optional_enum(RiskLevel, data, "exposureLevel"),
        device_value=json_text(data, "deviceValue"),
        machine_tags=string_list(data.get("machineTags")),
        aad_device_id=json_text(data, "aadDeviceId"),
    )
