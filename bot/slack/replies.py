"""Turns a command into the message the bot answers with: the one glue point between domain and cards."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.alerts.budget import BudgetExhausted
from bot.alerts.problems import explain
from bot.alerts.query import DeviceQuery
from bot.alerts.service import AlertService
from bot.defender.errors import DefenderError
from bot.slack import cards
from bot.slack.blockkit import Message, violations
from bot.slack.commands import Help, Invalid

log = logging.getLogger(__name__)

BUSY = "The bot is busy with other lookups right now. Try again in a few seconds."


class Replier:
    """Looks devices up through the alert service and renders the answer (or the problem) as a card."""

    def __init__(self, service: AlertService, card_context: Callable[[], cards.CardContext], *, backend: str) -> None:
        self._service = service
        self._card_context = card_context
        self._backend = backend

    def immediate(self, command: Help | Invalid) -> Message:
        """The answer to commands that need no Defender call."""
        if isinstance(command, Help):
            return cards.help_card(backend=self._backend)
        return cards.problem_card(explain(command.error), command.text, command.usage)

    def lookup(self, query: DeviceQuery, text: str = "", *, refresh: bool = False) -> Message:
        try:
            result = self._service.device_alerts(query.device, query.filters, refresh=refresh)
        except (DefenderError, BudgetExhausted) as exc:
            problem = explain(exc)
            log.warning(
                "lookup of %s failed: %s (%s; tracking id %s)",
                query.device.value,
                problem.kind.value,
                problem.operator_detail or "-",
                problem.tracking_id or "-",
            )
            return cards.problem_card(problem, text)
        card = cards.device_card(result, self._card_context())
        problems = violations(card)
        if problems:  # a renderer bug must not cost the person their answer: degrade to a plain card
            log.error("device card broke Block Kit limits: %s", "; ".join(problems))
            return cards.text_only(card)
        return card
