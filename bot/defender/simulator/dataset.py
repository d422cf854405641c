"""The simulator's data set: deterministic devices and alert templates, deliberately awkward.

Duplicate hostnames, free-text device names, unknown enum values, a 500-alert device and alerts whose text
tries to inject Slack control sequences.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

Json = dict[str, Any]  # a Defender JSON object, camelCase keys as on the wire

SIMULATOR_BASE_URL = "https://api.simulator.invalid"
GRAPH_SIMULATOR_BASE_URL = "https://graph.simulator.invalid"
AAD_TENANT_ID = "0f3c2b1a-5d4e-4f6a-9b8c-7d6e5f4a3b2c"

HOSTILE_HOSTNAME = "ws-eng-666.contoso.local"
BUSY_HOSTNAME = "srv-build-07.contoso.local"
QUIET_HOSTNAME = "ws-reception-01.contoso.local"
DUPLICATE_HOSTNAME = "lt-dev-042.contoso.local"

# Fixed seed: the data set must be identical on every run so tests can rely on it.
SEED = 20261126
ODATA = "https://api.security.microsoft.com/api/$metadata#"
WINDOW_SECONDS = 60.0
MAX_TOP = 10_000
# Defender returns 0, 1, 3 or 7 fractional digits depending on the backend that wrote the field.
FRACTION_DIGITS = (0, 1, 3, 7)
# Error codes Defender uses where they differ from the HTTP reason phrase.
RBAC_GROUPS = {"Workstations": 101, "Servers": 102, "Laptops": 103, "Mobile": 104}


class Device(NamedTuple):
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
DEVICES = (
    Device("ws-fin-014.contoso.local", "Windows11", "23H2", 22631, "Workstations", "Active", "High", "High",
            "Normal", ("Finance",), 0.3, 7),
    Device("ws-fin-015.contoso.local", "Windows10", "22H2", 19045, "Workstations", "Active", "Low", "Medium",
            "Normal", ("Finance",), 0.5, 2),
    Device("ws-eng-101.contoso.local", "Windows11", "23H2", 22631, "Workstations", "Active", "Medium", "Medium",
            "Normal", ("Engineering",), 1.0, 4),
    Device(HOSTILE_HOSTNAME, "Windows11", "23H2", 22631, "Workstations", "Active", "High", "High", "Normal",
            ("Engineering", "<!channel>"), 0.1, 2),
    Device(QUIET_HOSTNAME, "Windows11", "23H2", 22631, "Workstations", "Active", "None", "Low", "Normal",
            ("Reception",), 0.2, 0),
    Device("ws-kiosk-03.contoso.local", "Windows10", "21H2", 19044, "Workstations", "Inactive", "None", "Low",
            "Normal", ("Kiosk",), 600.0, 1),
    Device("srv-sql-02.contoso.local", "WindowsServer2022", "21H2", 20348, "Servers", "Active", "Medium", "High",
            "High", ("SQL", "Tier1"), 0.2, 5),
    Device("srv-dc-01.contoso.local", "WindowsServer2022", "21H2", 20348, "Servers", "Active", "High", "High",
            "High", ("DomainController", "Tier0"), 0.05, 10),
    Device(BUSY_HOSTNAME, "WindowsServer2019", "1809", 17763, "Servers", "Active", "Medium", "Medium", "Normal",
            ("CI",), 0.1, 500),
    Device("srv-backup-01.contoso.local", "WindowsServer2022", "21H2", 20348, "Servers",
            "NoSensorDataImpairedCommunication", "Low", "Low", "High", (), 30.0, 1),
    Device("lnx-k8s-node-04.contoso.local", "Linux", "22.04", None, "Servers", "Active", "Low", "Medium", "Normal",
            ("kubernetes",), 0.4, 3),
    Device("mac-design-07", "macOS", "14.5", None, "Laptops", "Active", "Low", "Low", "Normal", ("Design",), 2.0, 2),
    Device("mac-design-08", "macOS", "13.6", None, "Laptops", "Inactive", "None", "None", "Normal", ("Design",),
            400.0, 0),
    Device("lt-hr-031.contoso.local", "Windows11", "22H2", 22621, "Laptops", "Active", "Medium", "Medium", "Normal",
            ("HR",), 3.0, 3),
    Device("lt-hr-032.contoso.local", "Windows10", "22H2", 19045, "Laptops", "ImpairedCommunication", "Low",
            "Medium", "Normal", ("HR",), 50.0, 1),
    Device("lt-sales-112.contoso.local", "Windows11", "23H2", 22631, "Laptops", "NoSensorData", "None", "Low",
            "Normal", ("Sales",), 200.0, 0),
    Device("lt-exec-001.contoso.local", "Windows11", "23H2", 22631, "Laptops", "Active", "High", "Medium", "High",
            ("VIP", "Executive"), 0.7, 6),
    # Re-onboarded laptop: the newer record is listed first so "last record wins" bugs show up.
    Device(DUPLICATE_HOSTNAME, "Windows11", "23H2", 22631, "Laptops", "Active", "Low", "Low", "Normal",
            ("Developers",), 0.2, 1, generation=2),
    Device(DUPLICATE_HOSTNAME, "Windows10", "22H2", 19045, "Laptops", "Inactive", "Medium", "Medium", "Normal",
            ("Developers",), 960.0, 2),
    Device("Pixel 8 (J. Doe)", "Android", "14", None, "Mobile", "Active", "Low", "Low", "Normal", (), 5.0, 1),
    Device("Pat O'Brien's iPhone", "iOS", "17.5.1", None, "Mobile", "Active", "None", "Low", "Normal", (), 8.0, 1),
)


class _Template(NamedTuple):
    title: str
    description: str
    category: str
    source: str
    family: str | None
    threat: str | None
    mitre: tuple[str, ...] | str  # Defender sometimes returns a bare string instead of a list


TEMPLATES = (
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

SEVERITIES = ("UnSpecified", "Informational", "Low", "Medium", "High")
SEVERITY_WEIGHTS = (1, 3, 4, 5, 3)
STATUSES = ("New", "InProgress", "Resolved")
STATUS_WEIGHTS = (4, 2, 5)
# (classification, determination) pairs; New alerts are never classified. Determinations in the MDE API's own
# spelling (alerts.md): its "Not malicious" is Clean and "Not enough data to validate" InsufficientData; the
# Graph names (notMalicious, notEnoughDataToValidate) are Graph's alone.
VERDICTS = (
    (None, None),
    ("TruePositive", "Malware"),
    ("TruePositive", "MultiStagedAttack"),
    ("InformationalExpectedActivity", "SecurityTesting"),
    ("InformationalExpectedActivity", "LineOfBusinessApplication"),
    ("FalsePositive", "Clean"),
    ("FalsePositive", "InsufficientData"),
)
INVESTIGATION_STATES = ("Unknown", "Terminated", "SuccessfullyRemediated", "Benign", "Failed", "PartiallyRemediated",
                         "Running", "PendingApproval", "PendingResource", "Queued", "UnsupportedAlertType",
                         "SuppressedAlert")
ASSIGNEES = ("secops@contoso.com", "j.doe@contoso.com", "p.obrien@contoso.com", "Automation")
RELATED_USERS: tuple[Json | str | None, ...] = (
    {"userName": "jdoe", "domainName": "CONTOSO"},
    "CONTOSO\\svc-sql",
    None,
    {"userName": "p.obrien", "domainName": "contoso.local"},
)
# Alert id prefixes differ by the detection pipeline that raised the alert.
ID_PREFIXES = {"CustomDetection": "ed", "CustomerTI": "ti", "ThreatExperts": "te"}
COMMENTS = ("Looking into it.", "Confirmed with the device owner.", "Isolated the device pending review.")

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
EXTRA_ALERTS: tuple[tuple[str, Json], ...] = (
    *((HOSTILE_HOSTNAME, fields) for fields in _HOSTILE_ALERTS),
    ("srv-dc-01.contoso.local", {"severity": "Critical"}),  # not a documented severity: tolerant parsing
    ("srv-dc-01.contoso.local", {"status": "Unknown"}),
    ("ws-fin-014.contoso.local", {"status": "Dismissed"}),  # not a documented status either
)

# fmt: on

# Static part of every alert record; per-alert values and fresh lists are added by _base_alert.
ALERT_DEFAULTS: Json = {
    "investigationId": None,
    "assignedTo": None,
    "severity": "Medium",
    "status": "New",
    "classification": None,
    "determination": None,
    "investigationState": "Unknown",
    "detectionSource": "WindowsDefenderAtp",
    "category": "SuspiciousActivity",
    "threatFamilyName": None,
    "threatName": None,
    "title": "Simulated alert",
    "description": "",
    "resolvedTime": None,
    "aadTenantId": AAD_TENANT_ID,
    "relatedUser": None,
}


def iso(moment: datetime, digits: int = 7) -> str:
    """Render like Defender: UTC, `Z` suffix, 0-7 fractional digits."""
    base = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{moment.microsecond:06d}0"[:digits]
    return f"{base}.{fraction}Z" if digits else f"{base}Z"


def machine_id(device: Device) -> str:
    return hashlib.sha1(f"{device.host}|{device.generation}".encode(), usedforsecurity=False).hexdigest()


def machine_record(device: Device, now: datetime, rng: random.Random) -> Json:
    """The Defender machine record of a built-in device, its details drawn from `rng`."""
    windows = device.platform.startswith("Windows")
    last_seen = now - timedelta(hours=device.seen_hours_ago)
    internal = f"10.{rng.randint(0, 40)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}"
    record: Json = {
        "id": machine_id(device),
        "computerDnsName": device.host,
        "firstSeen": iso(last_seen - timedelta(days=rng.randint(60, 700)), 7),
        "lastSeen": iso(last_seen, 7),
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
        "rbacGroupId": RBAC_GROUPS[device.group],
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
