"""Triage from a card (opt-in): assign to me, set status, classify, comment, each answered to the clicker alone.

Every click and every submitted form is checked as a new request: the access policy, the device groups and the
rate limits (`Gate`), then `BOT_TRIAGE` and its lists (`TriagePolicy`). *Assign to me* writes at once; the
other changes open a form, which is also the confirmation, and write when it is submitted. The write itself,
and whether it is needed at all, is `bot.alerts.triage`; here the person is told the result or the reason,
the card is redrawn in place, the audit trail gets who, what, which alert and before → after, and a watch on
the device gets one line in its thread (`notes`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext

from bot.access.audit import Action, Outcome, Result
from bot.access.policy import MembershipSource, MembershipUnavailable, Requester
from bot.access.triage import TriagePolicy
from bot.alerts.problems import explain
from bot.alerts.query import DeviceQuery, QueryError, parse_query
from bot.alerts.scope import DeviceScope
from bot.alerts.triage import Actor, Triage, TriageRequest, TriageResult, Verb
from bot.alerts.triage import Outcome as Written
from bot.defender.client import counting_requests
from bot.defender.errors import DefenderError, PermissionDenied
from bot.slack import actions, cards
from bot.slack.alert_menu import ALERT_MENU, SHOW, TRIAGE_VIEW, AlertRef, ModalContext, open_alert_value
from bot.slack.alert_views import read_submission, triage_view
from bot.slack.blockkit import Message
from bot.slack.details import ALERT_GONE, INVALID_CONTROL, AlertDetails, ControlDeps, Where, find_alert, where_of
from bot.slack.gate import Denied
from bot.slack.modal_api import EmailUnavailable
from bot.slack.replies import BUSY, Answer
from bot.slack.requester import requester_in

log = logging.getLogger(__name__)

KINDS = {
    Verb.ASSIGN: Action.TRIAGE_ASSIGN,
    Verb.STATUS: Action.TRIAGE_STATUS,
    Verb.CLASSIFY: Action.TRIAGE_CLASSIFY,
    Verb.COMMENT: Action.TRIAGE_COMMENT,
}
MEMBERSHIP_UNKNOWN = "The bot could not check your user groups in Slack. Try again shortly."
# redraw(channel, message_ts, query, scope): the card as it is now (`Listeners.card_for`).
Redraw = Callable[[str, str, DeviceQuery, DeviceScope], Answer]


def card_lookup(body: dict[str, Any], seal: actions.ButtonSeal) -> str:
    """The lookup of the card the control sits on (its Refresh button's sealed value), or "" if it has none."""
    message = body.get("message")
    for block in message.get("blocks") or [] if isinstance(message, dict) else []:
        for element in block.get("elements") or [] if isinstance(block, dict) else []:
            if isinstance(element, dict) and element.get("action_id") == actions.REFRESH:
                try:
                    return seal.open(str(element.get("value", "")))
                except QueryError:
                    return ""
    return ""


def _done(result: TriageResult, request: TriageRequest) -> str:
    title = f"“{result.alert.title[:80]}”" if result.alert else "the alert"
    if result.outcome is Written.GONE:
        return ALERT_GONE
    if result.outcome is Written.UNCHANGED:
        if request.verb is Verb.COMMENT:
            return f"You just added that comment to {title}; it was not added twice."
        return f"Nothing to change: {title} already has {result.after}."
    if request.verb is Verb.COMMENT:
        return f"Comment added to {title}. It names you and this channel."
    change = result.change.replace(" -> ", " → ")
    return f"Done: {title}: {change}. The alert's comments name you and this channel."


class AlertTriage:
    def __init__(
        self,
        deps: ControlDeps,
        details: AlertDetails,
        triage: Triage,
        policy: TriagePolicy,
        memberships: MembershipSource,
        *,
        contact: str,
        redraw: Redraw,
        notes: Callable[[TriageResult, Actor], None] | None = None,
    ) -> None:
        self._deps = deps
        self._details = details
        self._triage = triage
        self._policy = policy
        self._memberships = memberships
        self._contact = contact
        self._redraw = redraw
        self._notes = notes

    def register(self, app: App) -> None:
        app.action(ALERT_MENU)(self.on_menu)
        app.view(TRIAGE_VIEW)(self.on_submit)

    # Menu --------------------------------------------------------------------------------------

    def on_menu(self, ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext) -> None:
        ack()
        requester = requester_in(context)
        where = where_of(body, requester)
        selected = action.get("selected_option")
        try:
            ref = open_alert_value(
                self._deps.seal, str(selected.get("value", "")) if isinstance(selected, dict) else ""
            )
        except QueryError:
            log.warning("refused an alert menu choice with a payload this bot did not write")
            invalid = Outcome(Result.INVALID, reason="control_payload")
            self._deps.refuse(Action.TRIAGE_INVALID, requester, where, invalid, INVALID_CONTROL)
            return
        if ref.verb == SHOW:
            self._details.show(ref, requester, where)
            return
        verb = Verb(ref.verb)
        container = body.get("container")
        message_ts = str(container.get("message_ts") or "") if isinstance(container, dict) else ""
        modal = ModalContext(ref.verb, ref.machine_id, ref.alert_id, requester.channel_id, message_ts,
                             where.response_url, card_lookup(body, self._deps.seal))  # fmt: skip
        scope = self._admit(KINDS[verb], requester, where, ref)
        if scope is None:
            return
        if verb is Verb.ASSIGN:
            request = TriageRequest(verb, ref.machine_id, ref.alert_id)
            self._queue(KINDS[verb], requester, where, lambda: self._write(requester, where, modal, request, scope))
        else:
            self._queue(KINDS[verb], requester, where, lambda: self._open_form(requester, where, modal, scope))

    def _open_form(self, requester: Requester, where: Where, modal: ModalContext, scope: DeviceScope) -> None:
        kind = KINDS[Verb(modal.verb)]
        with counting_requests() as count:
            try:
                alert, _ = find_alert(self._deps.service, modal.ref, scope)
            except DefenderError as exc:
                self._fail(kind, requester, where, modal.ref, exc, count.requests)
                return
        self._deps.gate.settle(requester, count.requests)
        if alert is None:
            self._deps.refuse(
                kind, requester, where, self._outcome(Result.NOT_FOUND, modal.ref, "gone"), ALERT_GONE, in_job=True
            )
            return
        opened = self._deps.modals.open(
            where.trigger_id, triage_view(Verb(modal.verb), alert, modal.sealed(self._deps.seal))
        )
        if opened.error:
            text = f"Slack did not open the form ({opened.error}). Choose the action again."
            self._deps.refuse(
                kind, requester, where, self._outcome(Result.ERROR, modal.ref, "views_open"), text, in_job=True
            )

    # Form submitted ----------------------------------------------------------------------------

    def on_submit(self, ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
        try:
            modal = ModalContext.open(self._deps.seal, str(view.get("private_metadata", "")))
        except QueryError:
            ack()
            log.warning("refused a form whose metadata this bot did not write")
            invalid = Outcome(Result.INVALID, reason="form_metadata")
            self._deps.audit.record(Action.TRIAGE_INVALID, requester_in(context), invalid)
            return
        requester = dataclasses.replace(requester_in(context), channel_id=modal.channel_id)
        state = view.get("state")
        values = state.get("values") if isinstance(state, dict) else None
        parsed = read_submission(modal, values if isinstance(values, dict) else {})
        if isinstance(parsed, dict):
            ack(response_action="errors", errors=parsed)
            return
        ack()
        where = Where(modal.channel_id, requester.user_id, modal.response_url)
        scope = self._admit(KINDS[parsed.verb], requester, where, modal.ref)
        if scope is not None:
            self._queue(
                KINDS[parsed.verb], requester, where, lambda: self._write(requester, where, modal, parsed, scope)
            )

    # Shared steps ------------------------------------------------------------------------------

    def _admit(self, kind: Action, requester: Requester, where: Where, ref: AlertRef) -> DeviceScope | None:
        """The triage switch and lists, then every rule a lookup passes; a refusal is audited and told."""
        try:
            self._memberships.prepare(self._policy.usergroups)  # read at start-up; waits briefly only if not yet
            refusal = self._policy.refusal(requester.user_id, self._memberships, self._contact)
        except MembershipUnavailable:
            refusal = MEMBERSHIP_UNKNOWN
        if refusal is not None:
            self._deps.refuse(kind, requester, where, self._outcome(Result.REFUSED, ref, "triage"), refusal)
            return None
        admitted = self._deps.gate.admit(requester, costly=True)
        if isinstance(admitted, Denied):
            self._deps.refuse(
                kind, requester, where, self._outcome(admitted.result, ref, admitted.reason), admitted.message
            )
            return None
        return admitted

    def _queue(self, kind: Action, requester: Requester, where: Where, job: Callable[[], None]) -> None:
        if not self._deps.submit(kind, requester, job, lambda message: self._deps.tell(where, message)):
            self._deps.tell_soon(where, cards.notice(BUSY))

    def _write(
        self, requester: Requester, where: Where, modal: ModalContext, request: TriageRequest, scope: DeviceScope
    ) -> None:
        kind = KINDS[request.verb]
        try:
            email: str | None = self._deps.modals.email_of(requester.user_id)
        except EmailUnavailable as exc:
            if request.verb is Verb.ASSIGN:
                text = f"The alert cannot be assigned to you: {exc}."
                self._deps.refuse(
                    kind, requester, where, self._outcome(Result.REFUSED, modal.ref, "no_email"), text, in_job=True
                )
                return
            email = None
        if request.verb is Verb.ASSIGN:
            request = dataclasses.replace(request, assignee=email)
        actor = Actor(requester.user_id, requester.channel_id, email)
        with counting_requests() as count:
            try:
                result = self._triage.apply(request, actor, scope)
            except DefenderError as exc:
                self._fail(kind, requester, where, modal.ref, exc, count.requests)
                return
        self._deps.gate.settle(requester, count.requests)
        reason = None if result.outcome is Written.WRITTEN else result.outcome.value
        outcome = Outcome(Result.OK if result.alert else Result.NOT_FOUND, modal.machine_id, reason=reason,
                          alert=modal.alert_id, change=result.change if result.alert else None)  # fmt: skip
        self._deps.audit.record(kind, requester, outcome, defender_calls=count.requests)
        if result.outcome is Written.WRITTEN:
            self._redraw_card(modal, scope, where)
            if self._notes is not None:
                try:
                    self._notes(result, actor)
                except Exception:  # the watch threads' line is extra: the write is made, and the person is told so
                    log.exception("could not tell the watches on %s of a change from Slack", modal.machine_id)
        self._deps.tell(where, cards.notice(_done(result, request)))

    def _redraw_card(self, modal: ModalContext, scope: DeviceScope, where: Where) -> None:
        """The card the change was made from, drawn again in place with the alert's new state."""
        try:
            query = actions.parse_lookup_value(modal.lookup) if modal.lookup else parse_query(modal.machine_id)
        except QueryError:
            query = parse_query(modal.machine_id)
        card = self._redraw(modal.channel_id, modal.message_ts, query, scope).message
        if where.response_url:
            self._deps.poster.respond(where.response_url, card, replace_original=True)
        elif modal.message_ts:
            self._deps.poster.update(modal.channel_id, modal.message_ts, card)

    def _fail(
        self, kind: Action, requester: Requester, where: Where, ref: AlertRef, exc: DefenderError, calls: int
    ) -> None:
        self._deps.gate.settle(requester, calls)
        if isinstance(exc, PermissionDenied):
            message: Message = cards.notice(f"Defender refused the change: {exc.message}")
            reason = "permission"
        else:
            problem = explain(exc)
            message, reason = cards.problem_card(problem), problem.kind.name.lower()
        result = Result.NOT_FOUND if reason == "not_found" else Result.ERROR
        self._deps.audit.record(kind, requester, self._outcome(result, ref, reason), defender_calls=calls)
        self._deps.tell(where, message)

    @staticmethod
    def _outcome(result: Result, ref: AlertRef, reason: str) -> Outcome:
        return Outcome(result, ref.machine_id, reason=reason, alert=ref.alert_id)
