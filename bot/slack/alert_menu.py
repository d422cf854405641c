"""Per-alert controls on a card: the *Details* button, or with triage on an overflow menu, and what they carry.

Each control's value is `<verb> <machine id> <alert id>`, sealed like every button value (`actions.ButtonSeal`),
so a crafted interaction cannot name an alert nobody was shown. A triage modal carries its context in its
`private_metadata`, sealed the same way: the verb and alert, the channel and message of the card it came from
(a view submission names neither), that card's response_url and its lookup (to redraw it in place).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from bot.alerts.query import QueryError
from bot.alerts.triage import Verb
from bot.slack.actions import ButtonSeal
from bot.slack.blockkit import MAX_BUTTON_VALUE, MAX_OPTION_VALUE, Block

DETAILS = "device_alerts.details"
ALERT_MENU = "device_alerts.alert_menu"
TRIAGE_VIEW = "device_alerts.triage"  # callback_id of every triage modal
SHOW = "details"  # the menu's verb for the details view
_MACHINE_ID = re.compile(r"[0-9a-f]{40}")
_ALERT_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,79}")
_VERBS = {SHOW, *(verb.value for verb in Verb)}
MENU = (
    (SHOW, "Details"),
    (Verb.ASSIGN.value, "Assign to me"),
    (Verb.STATUS.value, "Set status…"),
    (Verb.CLASSIFY.value, "Classify…"),
    (Verb.COMMENT.value, "Add comment…"),
)


@dataclass(frozen=True, slots=True)
class AlertRef:
    verb: str
    machine_id: str
    alert_id: str

    def value(self) -> str:
        return f"{self.verb} {self.machine_id} {self.alert_id}"


def addressable(alert_id: str) -> bool:
    """Whether an alert id fits a control's value (Defender's and Graph's ids do; anything odd gets none)."""
    return _ALERT_ID.fullmatch(alert_id) is not None


def parse_alert_value(value: str) -> AlertRef:
    """An opened control value; `QueryError` for anything this code would not have written."""
    parts = value.split(" ")
    if len(parts) != 3 or parts[0] not in _VERBS:
        raise QueryError("control payload is not an alert reference")
    verb, machine_id, alert_id = parts
    if not _MACHINE_ID.fullmatch(machine_id) or not addressable(alert_id):
        raise QueryError("control payload names no alert")
    return AlertRef(verb, machine_id, alert_id)


def open_alert_value(seal: ButtonSeal, sealed: str) -> AlertRef:
    return parse_alert_value(seal.open(sealed))


def alert_control(machine_id: str, alert_id: str, seal: ButtonSeal, *, triage: bool) -> Block | None:
    """The accessory of one alert's section: the triage menu, or Details (when triage is off, or the menu's
    values would not fit Slack's 150 characters); None for an id no value can carry."""
    if not addressable(alert_id):
        return None
    options = [
        {"text": {"type": "plain_text", "text": label},
         "value": seal.seal(AlertRef(verb, machine_id, alert_id).value())}
        for verb, label in MENU
    ]  # fmt: skip
    if triage and all(len(option["value"]) <= MAX_OPTION_VALUE for option in options):
        return {"type": "overflow", "action_id": ALERT_MENU, "options": options}
    return {"type": "button", "text": {"type": "plain_text", "text": "Details"}, "action_id": DETAILS,
            "value": options[0]["value"]}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ModalContext:
    """What a triage modal must remember until it is submitted (sealed into its private_metadata)."""

    verb: str
    machine_id: str
    alert_id: str
    channel_id: str
    message_ts: str = ""
    response_url: str = ""
    lookup: str = ""  # the card's own lookup (`<machine id> [filters]`), to redraw it as it was

    def sealed(self, seal: ButtonSeal) -> str:
        """Sealed JSON; a response_url too long to fit is left out (the answer then goes as an ephemeral post)."""
        fields = asdict(self)
        text = json.dumps(fields, separators=(",", ":"))
        if len(seal.seal(text)) > MAX_BUTTON_VALUE:
            text = json.dumps({**fields, "response_url": "", "lookup": ""}, separators=(",", ":"))
        return seal.seal(text)

    @classmethod
    def open(cls, seal: ButtonSeal, sealed: str) -> ModalContext:
        """Raise `QueryError` for metadata this bot did not write."""
        try:
            fields: Any = json.loads(seal.open(sealed))
            context = cls(**fields)
        except (ValueError, TypeError):
            raise QueryError("modal metadata is not valid") from None
        parse_alert_value(AlertRef(context.verb, context.machine_id, context.alert_id).value())
        return context

    @property
    def ref(self) -> AlertRef:
        return AlertRef(self.verb, self.machine_id, self.alert_id)
