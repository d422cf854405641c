"""What the bot may change on an alert, and the classification/determination pairs Defender accepts.

Both APIs take the same four properties (status, assignedTo, classification, determination) under their own
spellings: Defender for Endpoint's `PATCH /api/alerts/{id}` PascalCase values, Microsoft Graph's
`PATCH /v1.0/security/alerts_v2/{id}` camelCase ones, and a few determinations under other names
(Defender's `Clean` is Graph's `notMalicious`). A determination is only valid under its classification.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.defender.models import AlertStatus, Classification


@dataclass(frozen=True, slots=True)
class Determination:
    """One determination: how people read it, and its name in each API."""

    label: str
    mde: str
    graph: str


_OTHER = Determination("Other", "Other", "other")
# The pairs Microsoft documents for both update APIs (classification → its determinations).
DETERMINATIONS: dict[Classification, tuple[Determination, ...]] = {
    Classification.TRUE_POSITIVE: (
        Determination("Multistage attack", "MultiStagedAttack", "multiStagedAttack"),
        Determination("Malicious user activity", "MaliciousUserActivity", "maliciousUserActivity"),
        Determination("Compromised account", "CompromisedUser", "compromisedAccount"),
        Determination("Malware", "Malware", "malware"),
        Determination("Phishing", "Phishing", "phishing"),
        Determination("Unwanted software", "UnwantedSoftware", "unwantedSoftware"),
        _OTHER,
    ),
    Classification.INFORMATIONAL_EXPECTED_ACTIVITY: (
        Determination("Security test", "SecurityTesting", "securityTesting"),
        Determination("Line-of-business application", "LineOfBusinessApplication", "lineOfBusinessApplication"),
        Determination("Confirmed activity", "ConfirmedUserActivity", "confirmedActivity"),
        _OTHER,
    ),
    Classification.FALSE_POSITIVE: (
        Determination("Not malicious", "Clean", "notMalicious"),
        Determination("Not enough data to validate", "InsufficientData", "notEnoughDataToValidate"),
        _OTHER,
    ),
}
CLASSIFICATION_LABELS = {
    Classification.TRUE_POSITIVE: "True positive",
    Classification.INFORMATIONAL_EXPECTED_ACTIVITY: "Informational, expected activity",
    Classification.FALSE_POSITIVE: "False positive",
}
SETTABLE_STATUSES = (AlertStatus.NEW, AlertStatus.IN_PROGRESS, AlertStatus.RESOLVED)


def determination(classification: Classification, name: str) -> Determination | None:
    """The determination called `name` (in either API's spelling) under `classification`, if that pair exists."""
    folded = name.casefold()
    return next(
        (d for d in DETERMINATIONS.get(classification, ()) if folded in (d.mde.casefold(), d.graph.casefold())),
        None,
    )


@dataclass(frozen=True, slots=True)
class AlertUpdate:
    """One write: the properties to set (None: left as they are) and the comment that goes with it."""

    comment: str
    status: AlertStatus | None = None
    assigned_to: str | None = None
    classification: Classification | None = None
    determination: Determination | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in SETTABLE_STATUSES:
            raise ValueError(f"status {self.status.value} cannot be set")
        if (self.classification is None) != (self.determination is None):
            raise ValueError("classification and determination are set together")
        if self.classification is not None and self.determination not in DETERMINATIONS.get(self.classification, ()):
            raise ValueError("that determination does not go with that classification")

    @property
    def changes_properties(self) -> bool:
        return any(v is not None for v in (self.status, self.assigned_to, self.classification))

    def mde_body(self) -> dict[str, str]:
        """The JSON body of Defender for Endpoint's PATCH (which carries the comment too)."""
        body = {"comment": self.comment}
        if self.status is not None:
            body["status"] = self.status.value
        if self.assigned_to is not None:
            body["assignedTo"] = self.assigned_to
        if self.classification is not None and self.determination is not None:
            body["classification"] = self.classification.value
            body["determination"] = self.determination.mde
        return body

    def graph_body(self) -> dict[str, str]:
        """The JSON body of Graph's PATCH (the comment is a separate POST)."""
        body: dict[str, str] = {}
        if self.status is not None:
            body["status"] = _camel(self.status.value)
        if self.assigned_to is not None:
            body["assignedTo"] = self.assigned_to
        if self.classification is not None and self.determination is not None:
            body["classification"] = _camel(self.classification.value)
            body["determination"] = self.determination.graph
        return body


def _camel(value: str) -> str:
    return value[0].lower() + value[1:]
