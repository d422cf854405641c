"""Parsing Defender's Alert and Machine JSON into typed models, tolerating every documented drift."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.alerts.result import display_order
from bot.defender.errors import BadResponse, DefenderError
from bot.defender.models import (
    Alert,
    AlertStatus,
    Classification,
    Comment,
    HealthStatus,
    InvestigationState,
    Machine,
    RelatedUser,
    RiskLevel,
    Severity,
    format_timestamp,
    parse_alert,
    parse_machine,
    parse_timestamp,
)

# Microsoft's documented sample alert, verbatim.
SAMPLE_ALERT: dict[str, Any] = {
    "id": "da637472900382838869_1364969609",
    "incidentId": 1126093,
    "investigationId": None,
    "assignedTo": None,
    "severity": "Low",
    "status": "New",
    "classification": None,
    "determination": None,
    "investigationState": "Queued",
    "detectionSource": "WindowsDefenderAtp",
    "detectorId": "17e10bbc-3a68-474a-8aad-faef14d43952",
    "category": "Execution",
    "threatFamilyName": None,
    "title": "Low-reputation arbitrary code executed by signed executable",
    "description": "Binaries signed by Microsoft can be used to run low-reputation arbitrary code. This technique "
    "hides the execution of malicious code within a trusted process. As a result, the trusted process might "
    "exhibit suspicious behaviors, such as opening a listening port or connecting to a command-and-control "
    "(C&C) server.",
    "alertCreationTime": "2021-01-26T20:33:57.7220239Z",
    "firstEventTime": "2021-01-26T20:31:32.9562661Z",
    "lastEventTime": "2021-01-26T20:31:33.0577322Z",
    "lastUpdateTime": "2021-01-26T20:33:59.2Z",
    "resolvedTime": None,
    "machineId": "111e6dd8c833c8a052ea231ec1b19adaf497b625",
    "computerDnsName": "temp123.middleeast.corp.microsoft.com",
    "rbacGroupName": "A",
    "aadTenantId": "a839b112-1253-6432-9bf6-94542403f21c",
    "threatName": None,
    "mitreTechniques": ["T1064", "T1085", "T1220"],
    "relatedUser": {"userName": "temp123", "domainName": "MIDDLEEAST"},
    "comments": [
        {
            "comment": "test comment for docs",
            "createdBy": "secop123@contoso.com",
            "createdTime": "2021-01-26T01:00:37.8404534Z",
        }
    ],
    "evidence": [],
}

SAMPLE_MACHINE: dict[str, Any] = {
    "id": "1E5BC9D7E413DDD7902C2932E418702B84D0CC07",
    "computerDnsName": "mymachine1.contoso.com",
    "firstSeen": "2018-08-02T14:55:03.7791856Z",
    "lastSeen": "2018-08-02T14:55:03.7791856Z",
    "osPlatform": "Windows10",
    "version": "1709",
    "osProcessor": "x64",
    "lastIpAddress": "172.17.230.209",
    "lastExternalIpAddress": "167.220.196.71",
    "osBuild": 18209,
    "healthStatus": "Active",
    "rbacGroupId": 140,
    "rbacGroupName": "The-A-Team",
    "riskScore": "Low",
    "exposureLevel": "Medium",
    "isAadJoined": True,
    "aadDeviceId": "80fe8ff8-2624-418e-9591-41f0491218f9",
    "machineTags": ["test tag 1", "test tag 2"],
    "onboardingStatus": "Onboarded",
    "deviceValue": "Normal",
}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def alert(**fields: Any) -> Alert:
    return parse_alert({"id": fields.pop("id", "a1"), **fields})


# The documented sample ---------------------------------------------------------------------


def test_documented_sample_alert_parses_field_by_field() -> None:
    parsed = parse_alert(copy.deepcopy(SAMPLE_ALERT))
    assert parsed.id == "da637472900382838869_1364969609"
    assert parsed.title == "Low-reputation arbitrary code executed by signed executable"
    assert parsed.description == SAMPLE_ALERT["description"]
    assert parsed.description.endswith("(C&C) server.")
    assert parsed.severity is Severity.LOW
    assert parsed.status is AlertStatus.NEW
    assert parsed.classification is None
    assert parsed.determination is None
    assert parsed.investigation_state is InvestigationState.QUEUED
    assert parsed.category == "Execution"
    assert parsed.detection_source == "WindowsDefenderAtp"
    assert parsed.created == utc(2021, 1, 26, 20, 33, 57, 722023)
    assert parsed.first_event == utc(2021, 1, 26, 20, 31, 32, 956266)
    assert parsed.last_event == utc(2021, 1, 26, 20, 31, 33, 57732)
    assert parsed.last_update == utc(2021, 1, 26, 20, 33, 59, 200000)
    assert parsed.resolved is None
    assert parsed.incident_id == 1126093
    assert parsed.investigation_id is None
    assert parsed.assigned_to is None
    assert parsed.machine_id == "111e6dd8c833c8a052ea231ec1b19adaf497b625"
    assert parsed.computer_dns_name == "temp123.middleeast.corp.microsoft.com"
    assert parsed.rbac_group_name == "A"
    assert parsed.threat_family_name is None
    assert parsed.threat_name is None
    assert parsed.mitre_techniques == ("T1064", "T1085", "T1220")
    assert parsed.related_user == RelatedUser("temp123", "MIDDLEEAST")
    assert str(parsed.related_user) == "MIDDLEEAST\\temp123"
    assert parsed.comments == (
        Comment("test comment for docs", "secop123@contoso.com", utc(2021, 1, 26, 1, 0, 37, 840453)),
    )
    assert parsed.last_activity == utc(2021, 1, 26, 20, 33, 59, 200000)
    assert parsed.is_open is True


def test_sample_alert_is_not_mutated_and_parse_is_deterministic() -> None:
    raw = copy.deepcopy(SAMPLE_ALERT)
    assert parse_alert(raw) == parse_alert(raw)
    assert raw == SAMPLE_ALERT


def test_alert_is_immutable() -> None:
    parsed = parse_alert(SAMPLE_ALERT)
    with pytest.raises(AttributeError):
        parsed.title = "changed"  # type: ignore[misc]


# Enums -------------------------------------------------------------------------------------

SEVERITIES = {
    "UnSpecified": Severity.UNSPECIFIED,
    "Informational": Severity.INFORMATIONAL,
    "Low": Severity.LOW,
    "Medium": Severity.MEDIUM,
    "High": Severity.HIGH,
}
STATUSES = {
    "Unknown": AlertStatus.UNKNOWN,
    "New": AlertStatus.NEW,
    "InProgress": AlertStatus.IN_PROGRESS,
    "Resolved": AlertStatus.RESOLVED,
}
CLASSIFICATIONS = {
    "TruePositive": Classification.TRUE_POSITIVE,
    "InformationalExpectedActivity": Classification.INFORMATIONAL_EXPECTED_ACTIVITY,
    "FalsePositive": Classification.FALSE_POSITIVE,
    "Unknown": Classification.UNKNOWN,
}
INVESTIGATION_STATES = {
    "Unknown": InvestigationState.UNKNOWN,
    "Terminated": InvestigationState.TERMINATED,
    "SuccessfullyRemediated": InvestigationState.SUCCESSFULLY_REMEDIATED,
    "Benign": InvestigationState.BENIGN,
    "Failed": InvestigationState.FAILED,
    "PartiallyRemediated": InvestigationState.PARTIALLY_REMEDIATED,
    "Running": InvestigationState.RUNNING,
    "PendingApproval": InvestigationState.PENDING_APPROVAL,
    "PendingResource": InvestigationState.PENDING_RESOURCE,
    "PartiallyInvestigated": InvestigationState.PARTIALLY_INVESTIGATED,
    "TerminatedByUser": InvestigationState.TERMINATED_BY_USER,
    "TerminatedBySystem": InvestigationState.TERMINATED_BY_SYSTEM,
    "Queued": InvestigationState.QUEUED,
    "InnerFailure": InvestigationState.INNER_FAILURE,
    "PreexistingAlert": InvestigationState.PREEXISTING_ALERT,
    "UnsupportedOs": InvestigationState.UNSUPPORTED_OS,
    "UnsupportedAlertType": InvestigationState.UNSUPPORTED_ALERT_TYPE,
    "SuppressedAlert": InvestigationState.SUPPRESSED_ALERT,
}
HEALTH_STATUSES = {
    "Active": HealthStatus.ACTIVE,
    "Inactive": HealthStatus.INACTIVE,
    "ImpairedCommunication": HealthStatus.IMPAIRED_COMMUNICATION,
    "NoSensorData": HealthStatus.NO_SENSOR_DATA,
    "NoSensorDataImpairedCommunication": HealthStatus.NO_SENSOR_DATA_IMPAIRED_COMMUNICATION,
    "Unknown": HealthStatus.UNKNOWN,
}
RISK_LEVELS = {
    "None": RiskLevel.NONE,
    "Informational": RiskLevel.INFORMATIONAL,
    "Low": RiskLevel.LOW,
    "Medium": RiskLevel.MEDIUM,
    "High": RiskLevel.HIGH,
}


@pytest.mark.parametrize(("value", "member"), SEVERITIES.items())
def test_every_documented_severity_parses(value: str, member: Severity) -> None:
    assert Severity.parse(value) is member
    assert alert(severity=value).severity is member


@pytest.mark.parametrize(("value", "member"), STATUSES.items())
def test_every_documented_status_parses(value: str, member: AlertStatus) -> None:
    assert AlertStatus.parse(value) is member
    assert alert(status=value).status is member


@pytest.mark.parametrize(("value", "member"), CLASSIFICATIONS.items())
def test_every_documented_classification_parses(value: str, member: Classification) -> None:
    assert alert(classification=value).classification is member


@pytest.mark.parametrize(("value", "member"), INVESTIGATION_STATES.items())
def test_every_documented_investigation_state_parses(value: str, member: InvestigationState) -> None:
    assert alert(investigationState=value).investigation_state is member


@pytest.mark.parametrize(("value", "member"), HEALTH_STATUSES.items())
def test_every_documented_health_status_parses(value: str, member: HealthStatus) -> None:
    assert parse_machine({"id": "m", "healthStatus": value}).health_status is member


@pytest.mark.parametrize(("value", "member"), RISK_LEVELS.items())
def test_every_documented_risk_level_parses(value: str, member: RiskLevel) -> None:
    machine = parse_machine({"id": "m", "riskScore": value, "exposureLevel": value})
    assert machine.risk_score is member
    assert machine.exposure_level is member


def test_enum_lists_cover_every_member() -> None:
    # If a member is added to the code, the documented-value tables above must learn about it.
    assert set(SEVERITIES.values()) | {Severity.UNKNOWN} == set(Severity)
    assert set(STATUSES.values()) == set(AlertStatus)
    assert set(CLASSIFICATIONS.values()) == set(Classification)
    assert set(INVESTIGATION_STATES.values()) == set(InvestigationState)
    assert set(HEALTH_STATUSES.values()) == set(HealthStatus)
    assert set(RISK_LEVELS.values()) | {RiskLevel.UNKNOWN} == set(RiskLevel)


@pytest.mark.parametrize(
    ("enum_type", "value", "member"),
    [
        (Severity, "HIGH", Severity.HIGH),
        (Severity, "high", Severity.HIGH),
        (Severity, "Unspecified", Severity.UNSPECIFIED),
        (Severity, "UNSPECIFIED", Severity.UNSPECIFIED),
        (Severity, "informational", Severity.INFORMATIONAL),
        (AlertStatus, "inprogress", AlertStatus.IN_PROGRESS),
        (AlertStatus, "IN_PROGRESS", AlertStatus.IN_PROGRESS),
        (AlertStatus, "In Progress", AlertStatus.IN_PROGRESS),
        (AlertStatus, "RESOLVED", AlertStatus.RESOLVED),
        (Classification, "true_positive", Classification.TRUE_POSITIVE),
        (Classification, "FALSEPOSITIVE", Classification.FALSE_POSITIVE),
        (InvestigationState, "pending_approval", InvestigationState.PENDING_APPROVAL),
        (InvestigationState, "Unsupported OS", InvestigationState.UNSUPPORTED_OS),
        (HealthStatus, "no_sensor_data", HealthStatus.NO_SENSOR_DATA),
        (HealthStatus, "Impaired Communication", HealthStatus.IMPAIRED_COMMUNICATION),
        (RiskLevel, "none", RiskLevel.NONE),
        (RiskLevel, "MEDIUM", RiskLevel.MEDIUM),
    ],
)
def test_enum_case_and_separator_variants(enum_type: Any, value: str, member: Any) -> None:
    assert enum_type.parse(value) is member


@pytest.mark.parametrize(
    ("enum_type", "value"),
    [
        (Severity, "Critical"),
        (Severity, ""),
        (Severity, None),
        (Severity, 4),
        (Severity, ["High"]),
        (Severity, {"value": "High"}),
        (AlertStatus, "Dismissed"),
        (AlertStatus, "Closed"),
        (AlertStatus, True),
        (Classification, "Malicious"),
        (InvestigationState, "Exploded"),
        (HealthStatus, "Quantum"),
        (RiskLevel, "Extreme"),
    ],
)
def test_unknown_enum_values_become_unknown(enum_type: Any, value: object) -> None:
    assert enum_type.parse(value) is enum_type.UNKNOWN


def test_unknown_values_in_records_never_break_parsing() -> None:
    parsed = alert(severity="Critical", status="Dismissed", classification="Malicious", investigationState="Exploded")
    assert parsed.severity is Severity.UNKNOWN
    assert parsed.status is AlertStatus.UNKNOWN
    assert parsed.classification is Classification.UNKNOWN
    assert parsed.investigation_state is InvestigationState.UNKNOWN
    assert parsed.is_open is True
    machine = parse_machine({"id": "m", "healthStatus": "Quantum", "riskScore": "Extreme", "exposureLevel": 3})
    assert machine.health_status is HealthStatus.UNKNOWN
    assert machine.risk_score is RiskLevel.UNKNOWN
    assert machine.exposure_level is RiskLevel.UNKNOWN


def test_severity_rank_orders_high_to_unspecified() -> None:
    assert Severity.HIGH.rank > Severity.MEDIUM.rank > Severity.LOW.rank
    assert Severity.LOW.rank > Severity.INFORMATIONAL.rank > Severity.UNSPECIFIED.rank
    assert Severity.UNKNOWN.rank == Severity.UNSPECIFIED.rank == 0
    assert Severity.HIGH.rank == 4
    ranked = sorted(Severity, key=lambda s: s.rank, reverse=True)
    assert ranked[:5] == [Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFORMATIONAL, Severity.UNSPECIFIED]


def test_labels() -> None:
    assert Severity.UNSPECIFIED.label == "Unspecified"
    assert Severity.HIGH.label == "High"
    assert AlertStatus.IN_PROGRESS.label == "In progress"
    assert AlertStatus.NEW.label == "New"


# Nulls, missing fields, wrong types ----------------------------------------------------------


def test_minimal_alert_has_safe_defaults() -> None:
    parsed = parse_alert({"id": "only-an-id"})
    assert parsed.id == "only-an-id"
    assert parsed.title == "(untitled alert)"
    assert parsed.description == ""
    assert parsed.severity is Severity.UNKNOWN
    assert parsed.status is AlertStatus.UNKNOWN
    assert parsed.classification is None
    assert parsed.investigation_state is None
    for name in (
        "determination",
        "category",
        "detection_source",
        "created",
        "first_event",
        "last_event",
        "last_update",
        "resolved",
        "incident_id",
        "investigation_id",
        "assigned_to",
        "machine_id",
        "computer_dns_name",
        "rbac_group_name",
        "threat_family_name",
        "threat_name",
        "related_user",
        "last_activity",
    ):
        assert getattr(parsed, name) is None, name
    assert parsed.mitre_techniques == ()
    assert parsed.comments == ()
    assert parsed.is_open is True


def test_explicit_nulls_and_empty_strings_are_none() -> None:
    raw = {key: None for key in SAMPLE_ALERT}
    raw["id"] = "x"
    parsed = parse_alert(raw)
    assert parsed == parse_alert({"id": "x"})
    empty = parse_alert({"id": "x", "title": "", "category": "", "classification": "", "investigationState": ""})
    assert empty.title == "(untitled alert)"
    assert empty.category is None
    assert empty.classification is None
    assert empty.investigation_state is None


def test_wrong_types_are_coerced_or_dropped() -> None:
    parsed = alert(
        title=42,
        description=["x"],
        category=3.5,
        assignedTo=True,
        incidentId="1126093",
        investigationId=True,
    )
    assert parsed.title == "42"
    assert parsed.description == "['x']"
    assert parsed.category == "3.5"
    assert parsed.assigned_to == "True"
    assert parsed.incident_id == 1126093
    assert parsed.investigation_id is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1126093, 1126093),
        (0, 0),
        ("42", 42),
        (" 42 ", 42),
        (None, None),
        (True, None),
        (False, None),
        ("", None),
        ("-5", None),
        ("4.2", None),
        (4.0, None),
        ("abc", None),
        ([1], None),
        ({"id": 1}, None),
    ],
)
def test_incident_and_investigation_ids(value: object, expected: int | None) -> None:
    parsed = alert(incidentId=value, investigationId=value)
    assert parsed.incident_id == expected
    assert parsed.investigation_id == expected


@pytest.mark.parametrize("value", ["\u00b2", "1\u00b2", "\u2460", "\u00b9\u00b2\u00b3"])
def test_non_decimal_digit_strings_do_not_break_parsing(value: str) -> None:
    # str.isdigit() accepts superscripts and circled digits that int() cannot read (once a ValueError).
    assert alert(incidentId=value, investigationId=value).incident_id is None
    assert parse_machine({"id": "m", "rbacGroupId": value}).rbac_group_id is None


def test_huge_digit_strings_do_not_break_parsing() -> None:
    # Past 4300 digits int() refuses to convert (once a ValueError out of parse_alert).
    assert alert(incidentId="9" * 5000).incident_id is None
    assert parse_machine({"id": "m", "rbacGroupId": "9" * 5000}).rbac_group_id is None


def test_machine_id_is_lowercased_and_empty_is_none() -> None:
    assert alert(machineId="111E6DD8C833C8A052EA231EC1B19ADAF497B625").machine_id == (
        "111e6dd8c833c8a052ea231ec1b19adaf497b625"
    )
    assert alert(machineId="").machine_id is None


@pytest.mark.parametrize("raw", [None, [], "alert", 42, [SAMPLE_ALERT], ("id", "x")])
def test_non_object_record_is_bad_response(raw: object) -> None:
    with pytest.raises(BadResponse, match="expected a JSON object for alert") as caught:
        parse_alert(raw)
    assert isinstance(caught.value, DefenderError)
    with pytest.raises(BadResponse, match="expected a JSON object for machine"):
        parse_machine(raw)


@pytest.mark.parametrize("raw", [{}, {"id": None}, {"id": ""}, {"title": "no id"}, {"ID": "x"}])
def test_record_without_id_is_bad_response(raw: dict[str, Any]) -> None:
    with pytest.raises(BadResponse, match="alert record without an id"):
        parse_alert(raw)
    with pytest.raises(BadResponse, match="machine record without an id"):
        parse_machine(raw)


def test_numeric_id_is_kept_as_text() -> None:
    assert parse_alert({"id": 12345}).id == "12345"
    assert parse_alert({"id": 0}).id == "0"


# Timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-01-26T20:33:57Z", utc(2021, 1, 26, 20, 33, 57)),
        ("2021-01-26T20:33:59.2Z", utc(2021, 1, 26, 20, 33, 59, 200000)),
        ("2021-01-26T20:33:59.123Z", utc(2021, 1, 26, 20, 33, 59, 123000)),
        ("2021-01-26T20:33:59.123456Z", utc(2021, 1, 26, 20, 33, 59, 123456)),
        ("2021-01-26T20:33:57.7220239Z", utc(2021, 1, 26, 20, 33, 57, 722023)),
        ("2021-01-26T20:33:57.9999999Z", utc(2021, 1, 26, 20, 33, 57, 999999)),  # truncated, not rounded
        ("2021-01-26T20:33:57.0000000Z", utc(2021, 1, 26, 20, 33, 57)),
        ("2021-01-26T20:33:57+00:00", utc(2021, 1, 26, 20, 33, 57)),
        ("2021-01-26T20:33:57.5+00:00", utc(2021, 1, 26, 20, 33, 57, 500000)),
        ("2021-01-26T22:33:57+02:00", utc(2021, 1, 26, 20, 33, 57)),
        ("2021-01-26T15:03:57-05:30", utc(2021, 1, 26, 20, 33, 57)),
        ("2021-01-26T20:33:57+0000", utc(2021, 1, 26, 20, 33, 57)),
        ("2021-01-26T20:33:57", utc(2021, 1, 26, 20, 33, 57)),  # no zone: Defender means UTC
        ("2021-01-26 20:33:57Z", utc(2021, 1, 26, 20, 33, 57)),
        ("2021-01-26t20:33:57z", utc(2021, 1, 26, 20, 33, 57)),
        ("2021-01-26T20:33Z", utc(2021, 1, 26, 20, 33)),
        ("  2021-01-26T20:33:57Z\n", utc(2021, 1, 26, 20, 33, 57)),
        ("2020-02-29T23:59:59Z", utc(2020, 2, 29, 23, 59, 59)),
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed is not None
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        " ",
        "garbage",
        "yesterday",
        "2021-01-26",
        "20:33:57Z",
        "2021-13-01T00:00:00Z",
        "2021-02-30T00:00:00Z",
        "2021-01-26T24:00:00Z",
        "2021-01-26T20:61:00Z",
        "2021-01-26T20:33:57.Z",
        "2021-01-26T20:33:57ZZ",
        "2021-01-26T20:33:57+99:99",
        "2021-01-26T20:33:57 UTC",
        "0000-01-01T00:00:00Z",
        "\u0662\u0660\u0662\u0661-\u0660\u0661-\u0662\u0666T20:33:57Z",  # Arabic-Indic digits
        1611693237,
        1611693237.5,
        True,
        ["2021-01-26T20:33:57Z"],
        {"time": "2021-01-26T20:33:57Z"},
    ],
)
def test_unparseable_timestamps_are_none(value: object) -> None:
    assert parse_timestamp(value) is None


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00:00+01:00", "0001-01-01T00:59:59+01:00", "9999-12-31T23:59:59-01:00"]
)
def test_offsets_past_the_calendar_edges_are_none(text: str) -> None:
    # Converting these to UTC leaves year 1..9999 (once an OverflowError out of parse_alert).
    assert parse_timestamp(text) is None
    assert parse_alert({"id": "x", "lastUpdateTime": text}).last_update is None


def test_calendar_edges_in_utc_parse() -> None:
    assert parse_timestamp("0001-01-01T00:00:00Z") == utc(1, 1, 1)
    assert parse_timestamp("9999-12-31T23:59:59.9999999Z") == utc(9999, 12, 31, 23, 59, 59, 999999)


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (utc(2021, 1, 26, 20, 33, 57, 722023), "2021-01-26T20:33:57Z"),
        (datetime(2021, 1, 26, 22, 33, 57, tzinfo=timezone(timedelta(hours=2))), "2021-01-26T20:33:57Z"),
        (utc(1999, 12, 31, 23, 59, 59), "1999-12-31T23:59:59Z"),
    ],
)
def test_format_timestamp(moment: datetime, text: str) -> None:
    assert format_timestamp(moment) == text
    assert parse_timestamp(text) == moment.replace(microsecond=0)


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_format_then_parse_round_trips_to_the_second(moment: datetime) -> None:
    assert parse_timestamp(format_timestamp(moment)) == moment.replace(microsecond=0)


@given(
    st.datetimes(),
    st.integers(min_value=0, max_value=7),
)
def test_any_fraction_length_parses(moment: datetime, digits: int) -> None:
    fraction = f"{moment.microsecond:06d}0"[:digits]
    text = moment.isoformat(timespec="seconds") + (f".{fraction}" if digits else "") + "Z"
    expected = moment.replace(tzinfo=UTC, microsecond=int(fraction.ljust(6, "0")[:6]) if digits else 0)
    assert parse_timestamp(text) == expected


# mitreTechniques, relatedUser, comments -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["T1064", "T1085", "T1220"], ("T1064", "T1085", "T1220")),
        ("T1064", ("T1064",)),
        ("T1064, T1085,T1220", ("T1064", "T1085", "T1220")),
        ("T1064,,", ("T1064",)),
        ("", ()),
        (" , ", ()),
        (None, ()),
        ([], ()),
        (["T1064", None, ""], ("T1064",)),
        ([1064], ("1064",)),
        (42, ()),
        ({"T1064": True}, ()),
    ],
)
def test_mitre_techniques(value: object, expected: tuple[str, ...]) -> None:
    assert alert(mitreTechniques=value).mitre_techniques == expected


@pytest.mark.parametrize(
    ("value", "expected", "shown"),
    [
        (
            {"userName": "temp123", "domainName": "MIDDLEEAST"},
            RelatedUser("temp123", "MIDDLEEAST"),
            "MIDDLEEAST\\temp123",
        ),
        ({"userName": "temp123"}, RelatedUser("temp123", None), "temp123"),
        ({"userName": "temp123", "domainName": None}, RelatedUser("temp123", None), "temp123"),
        ({"userName": "temp123", "domainName": ""}, RelatedUser("temp123", None), "temp123"),
        ("MIDDLEEAST\\temp123", RelatedUser("MIDDLEEAST\\temp123"), "MIDDLEEAST\\temp123"),
        ("temp123", RelatedUser("temp123"), "temp123"),
    ],
)
def test_related_user(value: object, expected: RelatedUser, shown: str) -> None:
    parsed = alert(relatedUser=value).related_user
    assert parsed == expected
    assert str(parsed) == shown


@pytest.mark.parametrize(
    "value",
    [None, "", {}, {"domainName": "MIDDLEEAST"}, {"userName": None}, {"userName": ""}, ["temp123"], 7],
)
def test_related_user_absent(value: object) -> None:
    assert alert(relatedUser=value).related_user is None


def test_malformed_comments_are_skipped() -> None:
    parsed = alert(
        comments=[
            "just text",
            None,
            42,
            ["comment"],
            {"comment": "kept", "createdBy": "a@contoso.com", "createdTime": "2021-01-26T01:00:37Z"},
            {"createdBy": "b@contoso.com", "createdTime": "not a time"},
            {},
        ]
    )
    assert parsed.comments == (
        Comment("kept", "a@contoso.com", utc(2021, 1, 26, 1, 0, 37)),
        Comment("", "b@contoso.com", None),
        Comment("", None, None),
    )


@pytest.mark.parametrize("value", [None, "a comment", {"comment": "x"}, 3])
def test_comments_that_are_not_a_list_are_empty(value: object) -> None:
    assert alert(comments=value).comments == ()


# last_activity and is_open ---------------------------------------------------------------------


def test_last_activity_is_the_latest_of_update_event_and_creation() -> None:
    assert alert(
        alertCreationTime="2021-01-01T00:00:00Z",
        lastEventTime="2021-01-03T00:00:00Z",
        lastUpdateTime="2021-01-02T00:00:00Z",
    ).last_activity == utc(2021, 1, 3)
    assert alert(alertCreationTime="2021-01-05T00:00:00Z", lastEventTime="2021-01-03T00:00:00Z").last_activity == utc(
        2021, 1, 5
    )
    assert alert(lastUpdateTime="2021-01-02T00:00:00Z").last_activity == utc(2021, 1, 2)
    # firstEventTime and resolvedTime do not count as activity.
    assert alert(firstEventTime="2021-01-09T00:00:00Z", resolvedTime="2021-01-09T00:00:00Z").last_activity is None
    assert alert(lastUpdateTime="garbage").last_activity is None


@pytest.mark.parametrize(
    ("status", "is_open"),
    [("New", True), ("InProgress", True), ("Resolved", False), ("Unknown", True), ("Dismissed", True), (None, True)],
)
def test_is_open(status: str | None, is_open: bool) -> None:
    assert alert(status=status).is_open is is_open


# Machines ----------------------------------------------------------------------------------


def test_documented_sample_machine() -> None:
    machine = parse_machine(SAMPLE_MACHINE)
    assert machine == Machine(
        id="1e5bc9d7e413ddd7902c2932e418702b84d0cc07",
        computer_dns_name="mymachine1.contoso.com",
        first_seen=utc(2018, 8, 2, 14, 55, 3, 779185),
        last_seen=utc(2018, 8, 2, 14, 55, 3, 779185),
        os_platform="Windows10",
        os_version="1709",
        os_build="18209",
        last_ip_address="172.17.230.209",
        health_status=HealthStatus.ACTIVE,
        onboarding_status="Onboarded",
        rbac_group_name="The-A-Team",
        rbac_group_id=140,
        risk_score=RiskLevel.LOW,
        exposure_level=RiskLevel.MEDIUM,
        device_value="Normal",
        machine_tags=("test tag 1", "test tag 2"),
        aad_device_id="80fe8ff8-2624-418e-9591-41f0491218f9",
    )
    assert machine.display_name == "mymachine1.contoso.com"


def test_machine_os_version_prefers_os_version_over_version() -> None:
    assert parse_machine({"id": "m", "osVersion": "22H2", "version": "1709"}).os_version == "22H2"
    assert parse_machine({"id": "m", "osVersion": None, "version": "1709"}).os_version == "1709"
    assert parse_machine({"id": "m", "osVersion": "", "version": "1709"}).os_version == "1709"
    assert parse_machine({"id": "m", "version": 1709}).os_version == "1709"
    assert parse_machine({"id": "m"}).os_version is None


def test_minimal_machine_has_safe_defaults() -> None:
    machine = parse_machine({"id": "ABC"})
    assert machine.id == "abc"
    assert machine.display_name == "abc"
    assert machine.health_status is HealthStatus.UNKNOWN
    assert machine.risk_score is None
    assert machine.exposure_level is None
    assert machine.machine_tags == ()
    assert machine.first_seen is None
    assert machine.rbac_group_id is None
    assert machine.computer_dns_name is None


def test_machine_wrong_types() -> None:
    machine = parse_machine(
        {"id": "m", "rbacGroupId": "140", "machineTags": "a, b", "lastSeen": 12, "riskScore": "", "osBuild": None}
    )
    assert machine.rbac_group_id == 140
    assert machine.machine_tags == ("a", "b")
    assert machine.last_seen is None
    assert machine.risk_score is None
    assert machine.os_build is None
    assert parse_machine({"id": "m", "rbacGroupId": True}).rbac_group_id is None


# Property: nothing a Defender record can contain breaks parse_alert -----------------------------

ALERT_KEYS = [*SAMPLE_ALERT.keys(), "ID", "", "@odata.type"]
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
# Values that reach deep branches: timestamps of every shape, enum-ish words, user/comment objects.
timestamp_like = st.builds(
    lambda moment, digits, zone: (
        moment.isoformat(timespec="seconds") + ("." + f"{moment.microsecond:06d}9"[:digits] if digits else "") + zone
    ),
    # The whole calendar, its edges often: an offset at year 1 or 9999 must not overflow.
    st.sampled_from([datetime.min, datetime.max, datetime(1, 1, 1, 5), datetime(9999, 12, 31, 20)]) | st.datetimes(),
    st.integers(min_value=0, max_value=7),
    st.sampled_from(["Z", "z", "", "+00:00", "-05:30", "+14:00", "-23:59", "+0100", "+99:99", " "]),
)
digit_like = st.text(alphabet="0123456789 \u00b2\u2460\u0661", min_size=1, max_size=25) | st.just("9" * 5000)
enum_like = st.sampled_from(
    [*SEVERITIES, *STATUSES, *CLASSIFICATIONS, *INVESTIGATION_STATES, "Critical", "Dismissed", "in_progress", ""]
)
object_like = st.fixed_dictionaries(
    {},
    optional={
        "userName": json_values,
        "domainName": json_values,
        "comment": json_values,
        "createdBy": json_values,
        "createdTime": timestamp_like | json_values,
    },
)
alert_values = st.one_of(
    json_values, timestamp_like, digit_like, enum_like, object_like, st.lists(object_like | json_values, max_size=4)
)


@settings(max_examples=300, deadline=None)
@given(
    record=st.dictionaries(st.sampled_from(ALERT_KEYS) | st.text(max_size=8), alert_values, max_size=12),
    identifier=st.text(min_size=1) | st.integers(),
)
@example(record=copy.deepcopy(SAMPLE_ALERT), identifier="x")
@example(record={"incidentId": "\u0661\u0662", "relatedUser": {"userName": 0}}, identifier=0)
@example(record={"incidentId": "\u00b2", "lastUpdateTime": "0001-01-01T00:00:00+01:00"}, identifier="x")
@example(record={"investigationId": "9" * 5000, "resolvedTime": "9999-12-31T23:59:59-01:00"}, identifier="x")
def test_parse_alert_never_raises_on_json_with_an_id(record: dict[str, Any], identifier: str | int) -> None:
    record["id"] = identifier
    parsed = parse_alert(record)
    assert isinstance(parsed, Alert)
    assert parsed.id == str(identifier)
    assert isinstance(parsed.title, str)
    assert parsed.title
    assert isinstance(parsed.severity, Severity)
    assert isinstance(parsed.status, AlertStatus)
    assert all(isinstance(t, str) and t for t in parsed.mitre_techniques)
    assert all(isinstance(c, Comment) for c in parsed.comments)
    for moment in (parsed.created, parsed.first_event, parsed.last_event, parsed.last_update, parsed.resolved):
        assert moment is None or moment.tzinfo is UTC
    assert parsed.incident_id is None or type(parsed.incident_id) is int
    assert parsed.investigation_id is None or type(parsed.investigation_id) is int
    assert parsed.related_user is None or parsed.related_user.user_name
    assert display_order([parsed]) == (parsed,)


@settings(max_examples=300, deadline=None)
@given(timestamp_like | st.text(alphabet="0123456789-+:.TZ \u0663", max_size=30) | json_values)
def test_parse_timestamp_is_total(value: object) -> None:
    parsed = parse_timestamp(value)
    assert parsed is None or (isinstance(parsed, datetime) and parsed.tzinfo is UTC)
