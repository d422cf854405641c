"""Turns a command into the message the bot answers with: the one glue point between domain and cards.

Every answer also says what came of the request (`Outcome`), which the listeners write to the audit trail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from bot.access.audit import OK, Outcome, Result
from bot.alerts.problems import Problem, ProblemKind, explain
from bot.alerts.query import DeviceQuery
from bot.alerts.scope import EVERY_DEVICE, DeviceScope
from bot.alerts.service import AlertService
from bot.defender.errors import DefenderError
from bot.slack import cards
from bot.slack.blockkit import Message, violations
from bot.slack.commands import Help, Invalid
from bot.telemetry import logs
from bot.telemetry.metrics import LOOKUPS

log = logging.getLogger(__name__)

BUSY = "The bot is busy with other lookups right now. Try again in a few seconds."


@dataclass(frozen=True, slots=True)
class Answer:
    message: Message
    outcome: Outcome


def problem_outcome(problem: Problem, device: str | None) -> Outcome:
    """A failed lookup in the audit trail's terms (the problem kind, never its text)."""
    result = {ProblemKind.NOT_FOUND: Result.NOT_FOUND, ProblemKind.BAD_INPUT: Result.INVALID}.get(
        problem.kind, Result.ERROR
    )
    return Outcome(result, device, reason=problem.kind.name.lower())


class Replier:
    """Looks devices up through the alert service and renders the answer (or the problem) as a card."""

    def __init__(self, service: AlertService, card_context: Callable[[], cards.CardContext], *, backend: str) -> None:
        self._service = service
        self._card_context = card_context
        self._backend = backend

    def immediate(self, command: Help | Invalid, scope: DeviceScope = EVERY_DEVICE) -> Answer:
        """The answer to commands that need no Defender call."""
        if isinstance(command, Help):
            return Answer(cards.help_card(backend=self._backend, scope=scope), OK)
        problem = explain(command.error)
        return Answer(cards.problem_card(problem, command.text, command.usage), problem_outcome(problem, None))

    def lookup(
        self, query: DeviceQuery, text: str = "", *, refresh: bool = False, scope: DeviceScope = EVERY_DEVICE
    ) -> Answer:
        try:
            result = self._service.device_alerts(query.device, query.filters, refresh=refresh, scope=scope)
        except DefenderError as exc:
            problem = explain(exc)
            log.warning(
                "lookup of %s failed: %s (%s; tracking id %s)",
                query.device.value,
                problem.kind.value,
                problem.operator_detail or "-",
                problem.tracking_id or "-",
            )
            LOOKUPS.labels("failed").inc()
            card = cards.problem_card(problem, text, reference=logs.correlation_id())
            return Answer(card, problem_outcome(problem, query.device.value))
        outcome = Outcome(Result.OK, result.machine_id, from_cache=result.from_cache)
        LOOKUPS.labels("stale" if result.stale else "cache" if result.from_cache else "fresh").inc()
        card = cards.device_card(result, self._card_context())
        problems = violations(card)
        if problems:  # a renderer bug must not cost the person their answer: degrade to a plain card
            log.error("device card broke Block Kit limits: %s", "; ".join(problems))
            return Answer(cards.text_only(card), outcome)
        return Answer(card, outcome)
