"""Bolt middleware that runs before every listener: correlation ids, and a repair of Bolt's form parsing."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

from slack_bolt.request import BoltRequest
from slack_bolt.request.internals import build_context

from bot import logs

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
