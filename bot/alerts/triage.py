"""Triage writes below the chat layer: what a request changes, whether it is needed, and doing it once.

A `TriageRequest` names one alert of one device and one change (assign, status, classification, comment).
`Triage.apply` re-reads the alert's current state (as a new request: scope checked again, the list refreshed
unless it is seconds old), skips a write that would change nothing, writes through the API client with a
comment saying which Slack user did it and where, and folds the answer into the cached list so the card drawn
next shows it. One write per alert at a time in the cluster (a lock in the process, and the shared cache's
single flight across processes), so a double click writes once even when its two halves reach two processes; a
comment (which
no state makes redundant) is written once per person, alert and text while the deduper remembers it (an hour).
"""

from __future__ import annotations

import enum
import hashlib
import logging
import threading
from dataclasses import dataclass
from typing import Protocol

from bot.alerts.scope import DeviceScope
from bot.alerts.service import AlertService
from bot.defender.errors import DefenderError
from bot.defender.limits import Priority
from bot.defender.models import Alert, AlertStatus, Classification
from bot.defender.updates import CLASSIFICATION_LABELS, AlertUpdate, Determination
from bot.state.cache import NothingShared, SharedCache
from bot.state.dedupe import EventDeduper

log = logging.getLogger(__name__)

MAX_COMMENT = 1000  # what the comment box accepts; both APIs take more
APP_SIGNATURE = "device-alerts"
LOCK_STRIPES = 64


class AlertWriter(Protocol):
    """An API client that can update alerts (`DefenderClient`, or Graph's through the alert mirror)."""

    def update_alert(self, alert_id: str, update: AlertUpdate, *, priority: Priority = ...) -> Alert | None: ...


class Verb(enum.Enum):
    ASSIGN = "assign"
    STATUS = "status"
    CLASSIFY = "classify"
    COMMENT = "comment"


@dataclass(frozen=True, slots=True)
class TriageRequest:
    """One change to one alert of one device; only the field its verb needs is set."""

    verb: Verb
    machine_id: str
    alert_id: str
    status: AlertStatus | None = None
    assignee: str | None = None
    classification: Classification | None = None
    determination: Determination | None = None
    comment: str = ""  # the person's own words (COMMENT, or a note with another change)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asked, as the alert's comment names them: their Slack id, email when known, and the channel."""

    user_id: str
    channel_id: str
    email: str | None = None

    def signature(self) -> str:
        who = f"{self.email} (Slack user {self.user_id})" if self.email else f"Slack user {self.user_id}"
        where = f"channel {self.channel_id}" if self.channel_id else "a direct message"
        return f"{who} in {where}, via {APP_SIGNATURE}"


class Outcome(enum.Enum):
    WRITTEN = "written"
    UNCHANGED = "unchanged"  # already in the target state, or the same comment just written
    GONE = "gone"  # the alert is no longer on this device's list


@dataclass(frozen=True, slots=True)
class TriageResult:
    outcome: Outcome
    before: str  # the changed property as it was (`status: New`), for people and the audit trail
    after: str
    alert: Alert | None  # as it is now (None: gone)

    @property
    def change(self) -> str:
        """`status: New -> Resolved`; the state alone when nothing changed."""
        if self.before == self.after:
            return self.after
        name, _, old = self.before.partition(": ")
        new = self.after.removeprefix(f"{name}: ")
        return f"{name}: {old} -> {new}"


def _verdict(alert: Alert) -> str:
    if alert.classification is None:
        return "unclassified"
    return f"{alert.classification.value}/{alert.determination or '-'}"


def describe(alert: Alert, request: TriageRequest) -> str:
    """The property the request changes, as it is on `alert` (for before → after)."""
    if request.verb is Verb.ASSIGN:
        return f"assignedTo: {alert.assigned_to or '(none)'}"
    if request.verb is Verb.STATUS:
        return f"status: {alert.status.value}"
    if request.verb is Verb.CLASSIFY:
        return f"classification: {_verdict(alert)}"
    return f"comments: {len(alert.comments)}"


def target(request: TriageRequest) -> str:
    if request.verb is Verb.ASSIGN:
        return f"assignedTo: {request.assignee}"
    if request.verb is Verb.STATUS and request.status is not None:
        return f"status: {request.status.value}"
    if request.verb is Verb.CLASSIFY and request.classification and request.determination:
        return f"classification: {request.classification.value}/{request.determination.mde}"
    return "comment added"


def already_done(alert: Alert, request: TriageRequest) -> bool:
    """Whether the alert is already as the request would leave it (a comment is never)."""
    if request.verb is Verb.ASSIGN:
        return (alert.assigned_to or "").casefold() == (request.assignee or "").casefold()
    if request.verb is Verb.STATUS:
        return alert.status is request.status
    if request.verb is Verb.CLASSIFY and request.determination is not None:
        # Either spelling: the MDE API's values drifted (`Clean` and `NotMalicious` are both seen).
        spelled = {request.determination.mde.casefold(), request.determination.graph.casefold()}
        return alert.classification is request.classification and (alert.determination or "").casefold() in spelled
    return False


def _what(request: TriageRequest) -> str:
    if request.verb is Verb.ASSIGN:
        return f"Assigned to {request.assignee}"
    if request.verb is Verb.STATUS and request.status is not None:
        return f"Status set to {request.status.label}"
    if request.verb is Verb.CLASSIFY and request.classification and request.determination:
        label = CLASSIFICATION_LABELS.get(request.classification, request.classification.value)
        return f"Classified as {label}: {request.determination.label}"
    return "Comment"


def update_for(request: TriageRequest, actor: Actor) -> AlertUpdate:
    """The write: the property and a comment that names who did it, from where (the app writes as itself)."""
    note = request.comment.strip()[:MAX_COMMENT]
    comment = f"{_what(request)} by {actor.signature()}" + (f": {note}" if note else "")
    return AlertUpdate(
        comment=comment,
        status=request.status if request.verb is Verb.STATUS else None,
        assigned_to=request.assignee if request.verb is Verb.ASSIGN else None,
        classification=request.classification if request.verb is Verb.CLASSIFY else None,
        determination=request.determination if request.verb is Verb.CLASSIFY else None,
    )


def _comment_key(request: TriageRequest, actor: Actor) -> str:
    digest = hashlib.sha256(f"{request.alert_id}\x00{actor.user_id}\x00{request.comment}".encode()).hexdigest()
    return f"triage-comment:{digest}"


class Triage:
    """Thread-safe; one per process. `comments` (the event deduper) remembers recent comment writes."""

    def __init__(
        self,
        service: AlertService,
        writer: AlertWriter,
        comments: EventDeduper,
        shared: SharedCache | None = None,
    ) -> None:
        self._service = service
        self._writer = writer
        self._comments = comments
        self._shared: SharedCache = shared or NothingShared()
        # Striped locks: writes to one alert never overlap; writes to two alerts rarely wait for each other.
        self._locks = tuple(threading.Lock() for _ in range(LOCK_STRIPES))

    def current(self, request: TriageRequest, scope: DeviceScope, *, refresh: bool = False) -> Alert | None:
        """The alert as the device's list has it (cached unless `refresh`); raises like a lookup (scope too)."""
        result = self._service.device_alerts(request.machine_id, scope=scope, refresh=refresh)
        return next((a for a in result.alerts if a.id == request.alert_id), None)

    def apply(self, request: TriageRequest, actor: Actor, scope: DeviceScope) -> TriageResult:
        """Write the change unless it is already made; raises a `DefenderError` when the read or write fails."""
        with self._lock_for(request.alert_id):
            # `landed` is never set: every waiter runs after the holder, and reads the state it left.
            written, _ = self._shared.single_flight(
                f"triage:{request.alert_id}", lambda: self._apply(request, actor, scope), lambda: None
            )
            return written

    def _apply(self, request: TriageRequest, actor: Actor, scope: DeviceScope) -> TriageResult:
        alert = self._newest(request, self.current(request, scope, refresh=True))
        if alert is None:
            return TriageResult(Outcome.GONE, "", "", None)
        before = describe(alert, request)
        if already_done(alert, request) or not self._comment_is_new(request, actor):
            return TriageResult(Outcome.UNCHANGED, before, before, alert)
        try:
            written = self._writer.update_alert(alert.id, update_for(request, actor))
        except DefenderError:
            self._comments.forget(_comment_key(request, actor))  # not written: asking again must write it
            raise
        now = written or alert  # a comment alone changes no property
        if written is not None:
            self._remember(request.machine_id, now)
        log.info("alert %s: %s by Slack user %s", alert.id, request.verb.value, actor.user_id)
        return TriageResult(Outcome.WRITTEN, before, target(request), now)

    def _newest(self, request: TriageRequest, alert: Alert | None) -> Alert | None:
        """`alert`, or the version another process just wrote to the shared cache (this process's list may be
        seconds old: a write made elsewhere a moment ago must still count as made)."""
        shared = self._shared.get_alerts(request.machine_id)
        other = next((a for a in shared[0] if a.id == request.alert_id), None) if shared else None
        if alert is None or other is None or other.last_update is None or alert.last_update is None:
            return alert
        return other if other.last_update > alert.last_update else alert

    def _comment_is_new(self, request: TriageRequest, actor: Actor) -> bool:
        if request.verb is not Verb.COMMENT:
            return True
        return self._comments.first_time(_comment_key(request, actor))

    def _remember(self, machine_id: str, alert: Alert) -> None:
        """Fold the written alert into the cached list, so the redrawn card shows the new state at no cost (the
        list keeps its age: the other alerts are no fresher for the write)."""
        self._service.replace_alert(machine_id, alert)

    def _lock_for(self, alert_id: str) -> threading.Lock:
        return self._locks[int(hashlib.sha256(alert_id.encode()).hexdigest()[:8], 16) % LOCK_STRIPES]
