"""Pure renderers for watches: follow-up replies in a root card's thread, and the channel's list of watches."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.defender.models import AlertStatus, Severity
from bot.defender.portal import alert_url
from bot.slack import mrkdwn
from bot.slack.blockkit import Block, Message
from bot.slack.cards import SEVERITY_EMOJI, CardContext, context_block, section_block
from bot.state.watches import Change, ChangeKind, Watch, WatchStatus
from bot.watch.terms import watch_filters

MAX_CHANGE_LINES = 8
MAX_WATCH_LINES = 10
TITLE_LIMIT = 100


def _title(change: Change, context: CardContext) -> str:
    return mrkdwn.link(alert_url(context.portal, change.alert_id, context.tenant_id), change.title, TITLE_LIMIT)


def _status(value: str | None) -> str:
    return AlertStatus.parse(value).label if value else "unknown"


def change_line(change: Change, context: CardContext) -> str:
    """One change as one line of mrkdwn; every value from Defender is escaped. A change made from Slack says who."""
    line = _change_line(change, context)
    return f"{line} · by {mrkdwn.user(change.by)} via Slack" if change.by else line


def _change_line(change: Change, context: CardContext) -> str:
    if change.kind is ChangeKind.NEW:
        severity = Severity.parse(change.severity)
        category = f" · {mrkdwn.text(change.category, 40)}" if change.category else ""
        return f"{SEVERITY_EMOJI[severity]} *New alert* · {severity.label} · {_title(change, context)}{category}"
    if change.kind is ChangeKind.STATUS:
        verdict = " / ".join(mrkdwn.text(v, 40) for v in (change.classification, change.determination) if v)
        arrow = f"{_status(change.old)} → *{_status(change.new)}*" + (f" ({verdict})" if verdict else "")
        return f":arrows_counterclockwise: {_title(change, context)}: {arrow}"
    if change.kind is ChangeKind.ASSIGNMENT:
        new = mrkdwn.text(change.new, 60) if change.new else "nobody"
        old = mrkdwn.text(change.old, 60) if change.old else "unassigned"
        return f":bust_in_silhouette: {_title(change, context)}: assigned to {new} (was {old})"
    if change.kind is ChangeKind.RESTORED:
        since = f" ({mrkdwn.date(datetime.fromisoformat(change.old))})" if change.old else ""
        return (
            ":warning: The bot's shared watch state was lost (Redis was emptied or restarted without persistence). "
            f"This watch was restored from the bot's last check{since} and goes on; watches started after that "
            "check are gone and need starting again."
        )
    who = f" by {mrkdwn.user(change.old)}" if change.old else ""
    return f":stop_sign: Watch ended: {mrkdwn.text(change.new or 'ended', 40)}{who}."


def followup_card(device_name: str, changes: Sequence[Change], context: CardContext) -> Message:
    """One reply for everything one check found, bounded: "…and N more"."""
    blocks = [section_block(change_line(change, context)) for change in changes[:MAX_CHANGE_LINES]]
    if len(changes) > MAX_CHANGE_LINES:
        more = len(changes) - MAX_CHANGE_LINES
        blocks.append(context_block(f"…and {more} more changes"))
    kinds = {change.kind for change in changes}
    if kinds in ({ChangeKind.ENDED}, {ChangeKind.RESTORED}):
        what = "watch ended" if ChangeKind.ENDED in kinds else "watch restored"
    else:
        what = f"{len(changes)} change{'' if len(changes) == 1 else 's'}"
    return Message(mrkdwn.text(f"{device_name}: {what}", 300), blocks)


def watch_started_card(watch: Watch, user: str) -> Message:
    device = mrkdwn.text(watch.device_name, 100)
    text = f":eyes: {mrkdwn.user(user)} is watching *{device}* until {mrkdwn.date(watch.expires_at)}."
    filters = f" Only {mrkdwn.text(watch_filters(watch).describe())} is reported." if watch.filter_text else ""
    note = " New alerts and status changes will appear in this thread."
    return Message(mrkdwn.text(f"Watching {watch.device_name}", 300), [section_block(text + filters + note)])


def watches_card(watches: Sequence[Watch]) -> Message:
    """This channel's watches: device, who, since, until, last check, and why one is paused."""
    if not watches:
        return Message("No watches in this channel", [section_block("No device is watched in this channel.")])
    blocks: list[Block] = [section_block("*Watches in this channel*")]
    for watch in watches[:MAX_WATCH_LINES]:
        checked = mrkdwn.date(watch.last_checked_at, "{time}") if watch.last_checked_at else "not yet"
        line = (
            f"• *{mrkdwn.text(watch.device_name, 80)}* by {mrkdwn.user(watch.created_by)} since "
            f"{mrkdwn.date(watch.created_at)}, until {mrkdwn.date(watch.expires_at)}, last check {checked}"
        )
        if watch.filter_text:
            line += f" · {mrkdwn.text(watch_filters(watch).describe())}"
        if watch.status is WatchStatus.PAUSED:
            line += f" · :double_vertical_bar: paused: {mrkdwn.text(watch.pause_reason or 'unknown', 100)}"
        blocks.append(section_block(line))
    if len(watches) > MAX_WATCH_LINES:
        more = len(watches) - MAX_WATCH_LINES
        blocks.append(context_block(f"…and {more} more"))
    return Message(f"{len(watches)} watch{'' if len(watches) == 1 else 'es'} in this channel", blocks)
