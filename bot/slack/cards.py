"""Block Kit cards as pure functions: domain objects in, a `Message` (blocks + fallback text) out.

Every card stays inside Slack's limits for any input (see `bot.slack.blockkit`): alerts are added while
they fit and the rest are summarised as "…and N more". Every untrusted string goes through
`bot.slack.mrkdwn`, so alert content can neither notify anyone nor disguise a link.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.alerts.problems import Problem, ProblemKind
from bot.alerts.query import USAGE
from bot.alerts.result import DeviceAlerts
from bot.alerts.scope import EVERY_DEVICE, DeviceScope
from bot.defender.models import Alert, AlertStatus, Severity
from bot.defender.portal import alert_url, device_url
from bot.slack import actions, alert_menu, mrkdwn
from bot.slack.blockkit import MAX_BLOCKS, MAX_SECTION_TEXT, MAX_TOTAL_TEXT, Block, Message, block_text_length
from bot.text import ago, counts

SEVERITY_EMOJI = {
    Severity.HIGH: ":red_circle:",
    Severity.MEDIUM: ":large_orange_circle:",
    Severity.LOW: ":large_yellow_circle:",
    Severity.INFORMATIONAL: ":large_blue_circle:",
    Severity.UNSPECIFIED: ":white_circle:",
    Severity.UNKNOWN: ":white_circle:",
}
TITLE_LIMIT = 150
MAX_LINKED_URL = 500  # Defender's ids are short; a longer alert link is shown as plain text
NAME_LIMIT = 100
DETAIL_LIMIT = 60
# Room kept for the "…and N more" line and the buttons when deciding how many alerts fit.
_TAIL_RESERVE = 600


@dataclass(frozen=True, slots=True)
class CardContext:
    """What a card needs besides the data: where links point, how many alerts to show at most, and the
    seal its buttons' values carry (so a button press can be trusted to name a device the bot showed)."""

    portal: str
    tenant_id: str | None
    max_alerts: int = 10
    now: datetime | None = None
    seal: actions.ButtonSeal = field(kw_only=True)
    triage: bool = field(default=False, kw_only=True)  # BOT_TRIAGE=on: each alert gets the triage menu


def section_block(text: str) -> Block:
    """A mrkdwn section; `text` must already be escaped. The clip is a safety net: renderers size their
    parts to fit, so it should never cut."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn.clip(text, MAX_SECTION_TEXT)}}


def context_block(*texts: str) -> Block:
    """A context block of escaped mrkdwn elements (empty ones left out)."""
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": mrkdwn.clip(t, MAX_SECTION_TEXT)} for t in texts if t],
    }


def _button(label: str, action_id: str, **extra: Any) -> Block:
    return {"type": "button", "text": {"type": "plain_text", "text": label}, "action_id": action_id, **extra}


def _machine_facts(result: DeviceAlerts) -> str:
    facts = [f"`{mrkdwn.text(result.machine_id)}`"]
    machine = result.machine
    if machine is not None:
        os_name = " ".join(mrkdwn.text(p, 40) for p in (machine.os_platform, machine.os_version) if p)
        facts += [os_name, f"Health {mrkdwn.text(machine.health_status.value)}"]
        if machine.risk_score:
            facts.append(f"Risk {mrkdwn.text(machine.risk_score.value)}")
        if machine.exposure_level:
            facts.append(f"Exposure {mrkdwn.text(machine.exposure_level.value)}")
        if machine.rbac_group_name:
            facts.append(f"Group {mrkdwn.text(machine.rbac_group_name, DETAIL_LIMIT)}")
    return " · ".join(f for f in facts if f)


def _freshness(result: DeviceAlerts) -> str:
    if result.stale_reason:
        return f":warning: stale: {mrkdwn.text(result.stale_reason)}, data from {ago(result.age)} ago"
    as_of = f"as of {mrkdwn.date(result.fetched_at, '{time}')}"
    return f"{as_of} · cached {ago(result.age)}" if result.from_cache else f"{as_of} · fresh from Defender"


def _alert_section(alert: Alert, context: CardContext, machine_id: str) -> Block:
    status = alert.status.label
    if alert.status is AlertStatus.RESOLVED and (alert.classification or alert.determination):
        verdict = " / ".join(
            mrkdwn.text(v, 40) for v in (alert.classification and alert.classification.value, alert.determination) if v
        )
        status += f" ({verdict})"
    url = alert_url(context.portal, alert.id, context.tenant_id)
    title = (
        mrkdwn.link(url, alert.title, TITLE_LIMIT)
        if len(url) <= MAX_LINKED_URL
        else mrkdwn.text(alert.title, TITLE_LIMIT)
    )
    details = [
        mrkdwn.text(alert.category or "", 40),
        mrkdwn.text(alert.detection_source or "", 40),
        f"assigned to {mrkdwn.text(alert.assigned_to, DETAIL_LIMIT)}" if alert.assigned_to else "unassigned",
        f"last activity {mrkdwn.date(alert.last_activity)}" if alert.last_activity else "",
    ]
    first = f"{SEVERITY_EMOJI[alert.severity]} *{alert.severity.label}* · {status} · {title}"
    block = section_block(first + "\n" + " · ".join(d for d in details if d))
    control = alert_menu.alert_control(machine_id, alert.id, context.seal, triage=context.triage)
    return {**block, "accessory": control} if control else block


def fallback_text(result: DeviceAlerts) -> str:
    tally = ", ".join(f"{s.label} {n}" for s, n in result.severity_counts().items())
    noun = "alert" if len(result.alerts) == 1 else "alerts"
    tail = f" ({tally})" if tally else ""
    return mrkdwn.text(f"{result.display_name}: {len(result.alerts)} {noun}{tail}", 300)


@dataclass(frozen=True, slots=True)
class WatchBadge:
    """Shown on a watch's root card: who watches, until when, when it was last checked."""

    user: str
    until: datetime
    last_checked: datetime | None
    note: str | None = None

    def line(self) -> str:
        checked = mrkdwn.date(self.last_checked, "{time}") if self.last_checked else "not yet"
        text = f":eyes: Watched by {mrkdwn.user(self.user)} until {mrkdwn.date(self.until)} · last checked {checked}"
        return text + (f" · :hourglass: {mrkdwn.text(self.note, 200)}" if self.note else "")


def device_card(result: DeviceAlerts, context: CardContext, watch: WatchBadge | None = None) -> Message:
    """The device card: header, context, counts, as many top alerts as fit, then the buttons.

    With `watch`, it is a watch's root card: a line says who watches until when, and Unwatch replaces Watch.
    """
    shown = len(result.alerts)
    title = f"{mrkdwn.plain(result.display_name, NAME_LIMIT)} · {shown} alert{'' if shown == 1 else 's'}"
    summary = [
        "*Severity*  " + counts((f"{SEVERITY_EMOJI[s]} {s.label}", n) for s, n in result.severity_counts().items()),
        "*Status*  " + counts((s.label, n) for s, n in result.status_counts().items()),
    ]
    if not result.filters.is_empty:
        summary.append(f"*Filters*  {mrkdwn.text(result.filters.describe())} ({result.total} alerts in all)")
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": title}},
        context_block(_machine_facts(result), _freshness(result)),
        *([context_block(watch.line())] if watch else []),
        section_block("\n".join(summary)),
    ]
    value = context.seal.seal(actions.lookup_value(result.machine_id, result.filters))
    portal_url = device_url(context.portal, result.machine_id)
    watch_button = (
        _button("Unwatch", actions.UNWATCH, value=context.seal.seal(result.machine_id))
        if watch
        else _button("Watch", actions.WATCH, value=value)
    )
    buttons = {
        "type": "actions",
        "elements": [
            _button("Refresh", actions.REFRESH, value=value),
            _button("Open in Defender", actions.OPEN_DEVICE, url=portal_url),
            watch_button,
        ],
    }
    if result.alerts:
        blocks.append({"type": "divider"})
    used = block_text_length([*blocks, buttons])
    listed = 0
    for alert in result.alerts[: context.max_alerts]:
        alert_block = _alert_section(alert, context, result.machine_id)
        size = block_text_length([alert_block])
        if used + size > MAX_TOTAL_TEXT - _TAIL_RESERVE or len(blocks) + 3 > MAX_BLOCKS:
            break
        blocks.append(alert_block)
        used += size
        listed += 1
    if listed < shown:
        link = mrkdwn.link(portal_url, "see them all in Defender")
        blocks.append(context_block(f"Showing {listed} of {shown} · …and {shown - listed} more: {link}"))
    elif not result.alerts:
        empty = "No alerts match these filters." if not result.filters.is_empty else "No alerts for this device."
        blocks.append(section_block(empty))
    blocks.append(buttons)
    return Message(fallback_text(result), blocks)


def problem_card(
    problem: Problem, query_text: str = "", usage: str = USAGE, *, reference: str | None = None
) -> Message:
    """A short, actionable error card; never includes operator-only detail.

    `reference` (the request's correlation id) is shown for failures of the bot or Defender, so support can
    find the request's log lines; a typo or an unknown device needs none.
    """
    lines = [f":warning: {mrkdwn.text(problem.summary, 500)}"]
    if problem.suggestions:
        lines.append("Did you mean: " + ", ".join(f"`{mrkdwn.text(s, 80)}`" for s in problem.suggestions) + "?")
    if problem.hint:
        lines.append(mrkdwn.text(problem.hint))
    blocks: list[Block] = [section_block("\n".join(lines))]
    notes = []
    if query_text:
        notes.append(f"You asked: `{mrkdwn.text(query_text, 200)}`")
    if problem.tracking_id:
        notes.append(f"Defender tracking id `{mrkdwn.text(problem.tracking_id, 80)}`")
    if problem.kind is ProblemKind.BAD_INPUT:
        notes.append(f"Usage: `/device-alerts {mrkdwn.text(usage)}`")
    elif reference and problem.kind is not ProblemKind.NOT_FOUND:
        notes.append(f"Reference `{mrkdwn.text(reference, 40)}`")
    if notes:
        blocks.append(context_block(*notes))
    return Message(mrkdwn.text(problem.summary, 300), blocks)


def help_card(*, backend: str, scope: DeviceScope = EVERY_DEVICE) -> Message:
    """Usage, examples and what the bot can see (here: `scope`, the device groups open to the asker)."""
    lines = [
        "*Look up a device's Defender alerts*",
        f"`/device-alerts {mrkdwn.text(USAGE)}`",
        "",
        "*Examples*",
        "• `/device-alerts ws-fin-014` — every alert of that device",
        "• `/device-alerts ws-fin-014 severity:high,medium status:new since:24h`",
        "• `/device-alerts 1e5bc9d7e413ddd7902c2932e418702b84d0cc07` — by machine id",
        "• Mention me in a channel or message me: `@device-alerts ws-fin-014` — I answer in the thread",
        "",
        "*Filters*  `severity:` high, medium, low, informational, unspecified · `status:` new, inprogress, "
        "resolved · `since:` 30m, 24h, 7d, 2w (up to 180d)",
        "",
        "*Watch a device*",
        "• `/device-alerts watch ws-fin-014 for:8h severity:high` — I post its card in this channel and reply in the "
        "card's thread when an alert appears, changes status or is reassigned. `for:` defaults to 8h, at most 7d; "
        "`severity:` and `status:` choose what is reported",
        "• `/device-alerts unwatch ws-fin-014` — stop watching; `/device-alerts watches` — this channel's watches",
        "• The *Watch* button on a card does the same as `watch`; *Unwatch* on the watched card stops it",
    ]
    seen = (
        "the built-in Defender simulator (demo data, no real devices)"
        if backend == "simulator"
        else "every device in the Defender tenant, with the app's read-only permissions"
    )
    notes = [f"I can see {seen}. Results are cached for a minute and I keep under Defender's rate limits."]
    if not scope.everything:
        notes.append(f"Here you can look up devices in these device groups: {mrkdwn.text(scope.describe(), 500)}.")
    notes.append("To watch a device in a private channel, invite me first: `/invite @device-alerts`.")
    return Message("How to use /device-alerts", [section_block("\n".join(lines)), context_block(*notes)])


def notice(text: str) -> Message:
    """A short message from the bot itself (looking up, busy, watching); `text` is escaped like any other."""
    return Message(mrkdwn.text(text, 300), [section_block(mrkdwn.text(text))])


def text_only(message: Message) -> Message:
    """The message's fallback text as its only block: what is left when a card cannot be sent."""
    return Message(message.text, [section_block(message.text)])
