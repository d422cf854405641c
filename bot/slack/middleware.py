"""Bolt middleware that runs before every listener, one concern each: correlation ids, a repair of Bolt's form
parsing, dropping Slack's repeated event deliveries, and who is asking.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt import BoltResponse
from slack_bolt.request import BoltRequest
from slack_bolt.request.internals import build_context

from bot.state.dedupe import EventDeduper
from bot.telemetry import logs

log = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"


def correlate(next: Callable[[], None]) -> None:
    """Give each request a correlation id before anything logs (Bolt runs listeners on this thread)."""
    logs.begin_request()
    next()


def repair_form_body(req: BoltRequest, next: Callable[[], None]) -> None:
    """Read a slash command's form body that slack_bolt (1.30) dropped.

    Bolt takes any form body containing the text "payload" for an interaction and, finding no `payload`
    field, parses it as empty: `/device-alerts payload-srv-01` would never reach a listener. The raw
    body was already signature-checked, so it is parsed again here, and the context filled from it.
    """
    if not req.body and req.raw_body and req.content_type == FORM:
        fields = dict(parse_qsl(req.raw_body, keep_blank_values=True))
        if "command" in fields and "payload" not in fields:
            req.body = fields
            build_context(req.context, fields)
    next()


def drop_repeated_events(deduper: EventDeduper) -> Callable[..., BoltResponse | None]:
    """Answer a repeated delivery of an event (same `event_id`) with 200 and do nothing else."""

    def drop_repeated(body: dict[str, Any], next: Callable[[], None]) -> BoltResponse | None:
        event_id = body.get("event_id")
        if isinstance(event_id, str) and not deduper.first_time(event_id):
            log.info("dropped a repeated delivery of event %s", event_id)
            return BoltResponse(status=200, body="")
        next()
        return None

    return drop_repeated
