"""How a parsed command is answered: at once inside the acknowledgement, or on the work pool after a note."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from bot.access.audit import Action, Result
from bot.access.policy import Requester
from bot.alerts.scope import DeviceScope
from bot.slack.commands import Command, Help, Invalid, ListWatches, Lookup, StartWatch, StopWatch
from bot.slack.replies import Answer, Replier
from bot.slack.watching import SlackWatches


@dataclass(frozen=True, slots=True)
class Plan:
    """How to answer a command: `work` at once when there is no `note`, else on the pool after the note."""

    action: Action
    work: Callable[[], Answer]
    note: str = ""  # set for work that may call Defender or Slack: it runs on the pool
    card: bool = False  # a device card, which follows BOT_RESPONSE_VISIBILITY; notes stay with the asker
    private: bool = False  # help and bad input: only the asker sees the answer, wherever they asked

    @property
    def at_once(self) -> bool:
        return not self.note


def action_of(parsed: Command) -> Action:
    if isinstance(parsed, StartWatch):
        return Action.WATCH_START
    if isinstance(parsed, StopWatch):
        return Action.WATCH_STOP
    if isinstance(parsed, ListWatches):
        return Action.WATCH_LIST
    return Action.HELP if isinstance(parsed, Help) else Action.LOOKUP


def for_asker_only(plan: Plan, answer: Answer) -> bool:
    """Help, bad input, an unknown device and its "did you mean": seen only by the person who asked."""
    return plan.private or answer.outcome.result in (Result.NOT_FOUND, Result.INVALID)


def costly(parsed: Command) -> bool:
    """Whether answering may call Defender: only those requests count against the rate limits."""
    return isinstance(parsed, Lookup | StartWatch)


def plan_for(
    parsed: Command, requester: Requester, scope: DeviceScope, replier: Replier, watches: SlackWatches
) -> Plan:
    """How to answer `parsed` for `requester` (already admitted, with what they may see)."""
    channel, user, action = requester.channel_id, requester.user_id, action_of(parsed)
    if isinstance(parsed, Help | Invalid):
        return Plan(action, partial(replier.immediate, parsed, scope), private=True)
    if isinstance(parsed, ListWatches):
        return Plan(action, partial(watches.list, channel))
    if isinstance(parsed, StartWatch):
        start = partial(watches.start, channel, user, parsed.query, parsed.duration, scope)
        return Plan(action, work=start, note=f"Setting up a watch on {parsed.text}…")
    if isinstance(parsed, StopWatch):
        stop = partial(watches.stop, channel, user, parsed.query)
        return Plan(action, work=stop, note="Stopping the watch…")
    lookup = partial(replier.lookup, parsed.query, parsed.text, scope=scope)
    return Plan(action, work=lookup, note=f"Looking up {parsed.text}…", card=True)
