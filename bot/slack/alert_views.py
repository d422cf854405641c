"""Modals for one alert: the read-only details view and the triage forms, as pure functions.

Every string from Defender goes through `bot.slack.mrkdwn` like on the cards; each part is clipped to fit a
section, and the whole view stays inside Slack's modal limits (`bot.slack.modals`) for any alert.
"""

from __future__ import annotations

from typing import Any

from bot.alerts.triage import MAX_COMMENT, TriageRequest, Verb
from bot.defender.models import Alert, AlertStatus, Classification
from bot.defender.portal import alert_url, incident_url
from bot.defender.updates import CLASSIFICATION_LABELS, DETERMINATIONS, SETTABLE_STATUSES, determination
from bot.slack import mrkdwn
from bot.slack.alert_menu import TRIAGE_VIEW, ModalContext
from bot.slack.blockkit import MAX_SECTION_TEXT, Block
from bot.slack.cards import SEVERITY_EMOJI, CardContext, context_block, section_block
from bot.slack.modals import View

MAX_EVIDENCE = 15
MAX_COMMENTS = 10
PART_LIMIT = 2800  # room inside a section for the part's heading
NOTE_BLOCK = "note"
CHOICE_BLOCK = "choice"
CHOICE_ACTION = "value"


def _plain(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text}


def _part(heading: str, lines: list[str]) -> Block | None:
    """A section of escaped `lines` under a heading, cut before the section limit (…and N more)."""
    if not lines:
        return None
    body, used = [], len(heading) + 40
    for index, line in enumerate(lines):
        if used + len(line) + 1 > PART_LIMIT:
            body.append(f"…and {len(lines) - index} more")
            break
        body.append(line)
        used += len(line) + 1
    return section_block(mrkdwn.clip(f"*{heading}*\n" + "\n".join(body), MAX_SECTION_TEXT))


def _facts(alert: Alert) -> str:
    status = alert.status.label
    verdict = " / ".join(
        mrkdwn.text(v, 60) for v in (alert.classification and alert.classification.value, alert.determination) if v
    )
    lines = [
        f"{SEVERITY_EMOJI[alert.severity]} *{alert.severity.label}* · {status}",
        f"*Category* {mrkdwn.text(alert.category or 'none', 80)}"
        f" · *Source* {mrkdwn.text(alert.detection_source or '-', 60)}",
        f"*Assigned to* {mrkdwn.text(alert.assigned_to, 100) if alert.assigned_to else 'nobody'}",
        f"*Classification* {verdict or 'not classified'}",
    ]
    if alert.mitre_techniques:
        lines.append("*MITRE techniques* " + ", ".join(mrkdwn.text(t, 20) for t in alert.mitre_techniques[:20]))
    if alert.related_user:
        lines.append(f"*User* {mrkdwn.text(str(alert.related_user), 100)}")
    if alert.created:
        lines.append(f"*Created* {mrkdwn.date(alert.created)}")
    if alert.last_activity:
        lines.append(f"*Last activity* {mrkdwn.date(alert.last_activity)}")
    return "\n".join(lines)


def _links(alert: Alert, context: CardContext) -> str:
    links = [mrkdwn.link(alert_url(context.portal, alert.id, context.tenant_id), "Open the alert in Defender")]
    if alert.incident_id is not None:
        url = incident_url(context.portal, alert.incident_id, context.tenant_id)
        links.append(mrkdwn.link(url, f"Incident {alert.incident_id}"))
    return " · ".join(links)


def details_view(alert: Alert, context: CardContext) -> View:
    """The read-only view of one alert: facts, description, recommended action, evidence, comments, links."""
    comments = [
        f"• {mrkdwn.text(c.created_by or 'someone', 60)}"
        + (f" {mrkdwn.date(c.created_time)}" if c.created_time else "")
        + f": {mrkdwn.text(c.comment, 500)}"
        for c in alert.comments[-MAX_COMMENTS:]
    ]
    evidence = [f"• {mrkdwn.text(e.kind, 10)}: `{mrkdwn.text(e.value, 300)}`" for e in alert.evidence[:MAX_EVIDENCE]]
    parts = [
        _part("Description", [mrkdwn.text(alert.description, PART_LIMIT - 100)] if alert.description else []),
        _part("Recommended action", [mrkdwn.text(alert.recommended_actions, PART_LIMIT - 100)])
        if alert.recommended_actions
        else None,
        _part("Evidence", evidence),
        _part(f"Comments ({len(alert.comments)})", comments),
    ]
    blocks: list[Block] = [
        {"type": "header", "text": _plain(mrkdwn.plain(alert.title, 150) or "(untitled alert)")},
        section_block(_facts(alert)),
        *[part for part in parts if part is not None],
        context_block(_links(alert, context)),
    ]
    return {"type": "modal", "title": _plain("Alert details"), "close": _plain("Close"), "blocks": blocks}


# -- triage forms ----------------------------------------------------------------------------------------------


def _option(label: str, value: str) -> dict[str, Any]:
    return {"text": _plain(label), "value": value}


def _note_input(*, required: bool) -> Block:
    return {
        "type": "input",
        "block_id": NOTE_BLOCK,
        "optional": not required,
        "label": _plain("Comment" if required else "Comment (optional)"),
        "element": {"type": "plain_text_input", "action_id": CHOICE_ACTION, "multiline": True,
                    "max_length": MAX_COMMENT, **({"min_length": 1} if required else {})},
    }  # fmt: skip


_TITLES = {Verb.STATUS: ("Set alert status", "Set status"), Verb.CLASSIFY: ("Classify alert", "Classify"),
           Verb.COMMENT: ("Comment on alert", "Add comment")}  # fmt: skip
_WARNINGS = {
    Verb.STATUS: "Resolving closes the alert in Defender for everyone.",
    Verb.CLASSIFY: "The classification is shown to everyone who works on this alert in Defender.",
    Verb.COMMENT: "The comment is added to the alert in Defender.",
}


def _choice(verb: Verb, alert: Alert) -> Block | None:
    if verb is Verb.STATUS:
        options = [_option(s.label, s.value) for s in SETTABLE_STATUSES if s is not alert.status]
        element: dict[str, Any] = {"type": "radio_buttons", "action_id": CHOICE_ACTION, "options": options}
        return {"type": "input", "block_id": CHOICE_BLOCK, "label": _plain("New status"), "element": element}
    if verb is Verb.CLASSIFY:
        groups = [
            {"label": _plain(CLASSIFICATION_LABELS[c]), "options": [_option(d.label, f"{c.value}|{d.mde}") for d in ds]}
            for c, ds in DETERMINATIONS.items()
        ]
        element = {"type": "static_select", "action_id": CHOICE_ACTION, "option_groups": groups,
                   "placeholder": _plain("Classification and determination")}  # fmt: skip
        return {"type": "input", "block_id": CHOICE_BLOCK, "label": _plain("Classification"), "element": element}
    return None


def triage_view(verb: Verb, alert: Alert, metadata: str) -> View:
    """The form (and confirmation) for one triage change; `metadata` is the sealed `ModalContext`."""
    title, submit = _TITLES[verb]
    now = f"*{mrkdwn.text(alert.title, 200)}*\nNow: {alert.status.label}" + (
        f" · assigned to {mrkdwn.text(alert.assigned_to, 100)}" if alert.assigned_to else ""
    )
    choice = _choice(verb, alert)
    blocks = [
        section_block(now),
        *([choice] if choice else []),
        _note_input(required=verb is Verb.COMMENT),
        context_block(f"{_WARNINGS[verb]} Your Slack account and this channel are named in the alert's comments."),
    ]
    return {"type": "modal", "callback_id": TRIAGE_VIEW, "title": _plain(title), "submit": _plain(submit),
            "close": _plain("Cancel"), "private_metadata": metadata, "blocks": blocks}  # fmt: skip


def _value(values: dict[str, Any], block: str) -> str:
    state = values.get(block, {}).get(CHOICE_ACTION, {}) if isinstance(values.get(block), dict) else {}
    if not isinstance(state, dict):
        return ""
    selected = state.get("selected_option")
    raw = selected.get("value") if isinstance(selected, dict) else state.get("value")
    return raw if isinstance(raw, str) else ""


def read_submission(context: ModalContext, values: dict[str, Any]) -> TriageRequest | dict[str, str]:
    """The request a submitted form asks for, or errors by block id (shown in the form, which stays open)."""
    verb = Verb(context.verb)
    note = _value(values, NOTE_BLOCK).strip()
    if len(note) > MAX_COMMENT:
        return {NOTE_BLOCK: f"At most {MAX_COMMENT} characters."}
    base = TriageRequest(verb, context.machine_id, context.alert_id, comment=note)
    if verb is Verb.COMMENT:
        return base if note else {NOTE_BLOCK: "Write a comment."}
    chosen = _value(values, CHOICE_BLOCK)
    if verb is Verb.STATUS:
        status = AlertStatus.parse(chosen)
        if status not in SETTABLE_STATUSES:
            return {CHOICE_BLOCK: "Choose a status."}
        return TriageRequest(verb, context.machine_id, context.alert_id, status=status, comment=note)
    name, _, kind = chosen.partition("|")
    classification = Classification.parse(name)
    found = determination(classification, kind) if kind else None
    if found is None:
        return {CHOICE_BLOCK: "Choose a classification and determination."}
    return TriageRequest(verb, context.machine_id, context.alert_id, classification=classification,
                         determination=found, comment=note)  # fmt: skip
