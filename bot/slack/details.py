"""The *Details* control: one alert in a modal, for everyone who may see the device.

The click is checked like a new lookup from this person in this channel (access policy, device groups, rate
limits). The view is built from the device's cached alert list when it is there (no Defender call: the
click's `trigger_id` is worth 3 s), else from one lookup; if Slack then says the trigger expired, the person
is told to click again (the list is cached by then).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, BoltContext

from bot.access.audit import Action, AuditLog, Outcome, Result
from bot.access.policy import Requester
from bot.alerts.problems import ProblemKind, explain
from bot.alerts.query import QueryError
from bot.alerts.scope import DeviceScope
from bot.alerts.service import AlertService
from bot.defender.client import counting_requests
from bot.defender.errors import DefenderError
from bot.defender.models import Alert
from bot.slack import cards
from bot.slack.actions import ButtonSeal
from bot.slack.alert_menu import DETAILS, AlertRef, open_alert_value
from bot.slack.alert_views import details_view
from bot.slack.blockkit import Message
from bot.slack.gate import Denied, Gate
from bot.slack.modal_api import SlackModals
from bot.slack.poster import Poster, in_background
from bot.slack.replies import BUSY
from bot.slack.requester import requester_in

log = logging.getLogger(__name__)

INVALID_CONTROL = "That control's data is not valid. Run the command again."
ALERT_GONE = "That alert is no longer on this device's list. Run the command again for the current list."
TRIGGER_EXPIRED = (
    "Slack gives the bot 3 seconds to open the details, and fetching the alert took longer. "
    "Click Details again: the alert list is at hand now."
)
# submit(kind, requester, job, deliver): queue work on the pool, as the other listeners do (`Listeners.submit`).
Submit = Callable[[Action, Requester, Callable[[], object], Callable[[Message], object]], bool]


@dataclass(frozen=True, slots=True)
class Where:
    """Where answers to one interaction go: its response_url, else an ephemeral post to the person."""

    channel_id: str
    user_id: str
    response_url: str = ""
    trigger_id: str = ""


@dataclass(frozen=True, slots=True)
class ControlDeps:
    """What the per-alert controls share with the rest of the Slack edge."""

    service: AlertService
    gate: Gate
    audit: AuditLog
    seal: ButtonSeal
    poster: Poster
    modals: SlackModals
    card_context: Callable[[], cards.CardContext]
    submit: Submit

    def tell(self, where: Where, message: Message) -> None:
        """An ephemeral answer to the person who clicked or submitted."""
        if where.response_url and self.poster.respond(where.response_url, message):
            return
        if where.channel_id:
            self.poster.post_ephemeral(where.channel_id, where.user_id, message)

    def tell_soon(self, where: Where, message: Message) -> None:
        """`tell`, from the request thread: the acknowledgement does not wait for it."""
        in_background(lambda: self.tell(where, message))

    def refuse(
        self, kind: Action, requester: Requester, where: Where, outcome: Outcome, text: str, *, in_job: bool = False
    ) -> None:
        """Audit and tell a refusal; on the request thread (not `in_job`) the telling does not hold the ack."""
        self.audit.record(kind, requester, outcome)
        (self.tell if in_job else self.tell_soon)(where, cards.notice(text))


def where_of(body: dict[str, Any], requester: Requester) -> Where:
    url, trigger = body.get("response_url"), body.get("trigger_id")
    return Where(
        requester.channel_id,
        requester.user_id,
        url if isinstance(url, str) else "",
        trigger if isinstance(trigger, str) else "",
    )


def find_alert(service: AlertService, ref: AlertRef, scope: DeviceScope) -> tuple[Alert | None, bool]:
    """The alert from its device's list (cached when fresh), and whether the list came from the cache."""
    result = service.device_alerts(ref.machine_id, scope=scope)
    return next((a for a in result.alerts if a.id == ref.alert_id), None), result.from_cache


class AlertDetails:
    def __init__(self, deps: ControlDeps) -> None:
        self._deps = deps

    def register(self, app: App) -> None:
        app.action(DETAILS)(self.on_details)

    def on_details(self, ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext) -> None:
        ack()
        requester = requester_in(context)
        where = where_of(body, requester)
        try:
            ref = open_alert_value(self._deps.seal, str(action.get("value", "")))
        except QueryError:
            log.warning("refused a details control with a payload this bot did not write")
            invalid = Outcome(Result.INVALID, reason="control_payload")
            self._deps.refuse(Action.ALERT_DETAILS, requester, where, invalid, INVALID_CONTROL)
            return
        self.show(ref, requester, where)

    def show(self, ref: AlertRef, requester: Requester, where: Where) -> None:
        """Check the person like a new lookup, then open the view from the pool."""
        admitted = self._deps.gate.admit(requester, costly=True)
        if isinstance(admitted, Denied):
            outcome = Outcome(admitted.result, ref.machine_id, reason=admitted.reason, alert=ref.alert_id)
            self._deps.refuse(Action.ALERT_DETAILS, requester, where, outcome, admitted.message)
            return
        if not self._deps.submit(
            Action.ALERT_DETAILS, requester, lambda: self._open(ref, requester, where, admitted), self._teller(where)
        ):
            self._deps.tell_soon(where, cards.notice(BUSY))

    def _teller(self, where: Where) -> Callable[[Message], None]:
        return lambda message: self._deps.tell(where, message)

    def _open(self, ref: AlertRef, requester: Requester, where: Where, scope: DeviceScope) -> None:
        with counting_requests() as count:
            outcome, failure = self._view(ref, where, scope)
        self._deps.gate.settle(requester, count.requests)
        if failure is not None:
            self._deps.tell(where, failure)
        self._deps.audit.record(Action.ALERT_DETAILS, requester, outcome, defender_calls=count.requests)

    def _view(self, ref: AlertRef, where: Where, scope: DeviceScope) -> tuple[Outcome, Message | None]:
        """Open the view; what to audit, and what to tell the person when it did not open."""

        def failed(result: Result, reason: str, text: Message, cached: bool | None = None) -> tuple[Outcome, Message]:
            return Outcome(result, ref.machine_id, from_cache=cached, reason=reason, alert=ref.alert_id), text

        try:
            alert, cached = find_alert(self._deps.service, ref, scope)
        except DefenderError as exc:
            problem = explain(exc)
            result = Result.NOT_FOUND if problem.kind is ProblemKind.NOT_FOUND else Result.ERROR
            return failed(result, problem.kind.name.lower(), cards.problem_card(problem))
        if alert is None:
            return failed(Result.NOT_FOUND, "gone", cards.notice(ALERT_GONE), cached)
        opened = self._deps.modals.open(where.trigger_id, details_view(alert, self._deps.card_context()))
        if opened.error == "expired_trigger_id":
            return failed(Result.ERROR, "trigger_expired", cards.notice(TRIGGER_EXPIRED), cached)
        if opened.error:
            note = cards.notice(f"Slack did not open the details ({opened.error}).")
            return failed(Result.ERROR, "views_open", note, cached)
        return Outcome(Result.OK, ref.machine_id, from_cache=cached, alert=ref.alert_id), None
