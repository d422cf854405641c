"""Why a lookup failed, in words for the person who asked: one mapping shared by every front end.

Each renderer (terminal, Slack) shows `summary` and `hint`; `operator_detail` is for logs and the CLI
only, never for a channel (sign-in details help an admin, not an attacker).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from bot.alerts.query import QueryError
from bot.defender.errors import (
    AuthError,
    BadResponse,
    DefenderError,
    DefenderUnavailable,
    DeviceNotFound,
    InvalidDeviceReference,
    PermissionDenied,
    Throttled,
)
from bot.defender.limits import BudgetExhausted

PERMISSION_HINT = (
    "Grant the app registration the Alert.Read.All and Machine.Read.All application permissions "
    "(WindowsDefenderATP API) and an admin's consent."
)


class ProblemKind(enum.Enum):
    BAD_INPUT = "bad input"
    NOT_FOUND = "not found"
    PERMISSION = "permission missing"
    THROTTLED = "throttled"
    BUDGET = "budget exhausted"
    UNAVAILABLE = "Defender unavailable"
    AUTH = "sign-in failed"
    BAD_RESPONSE = "bad response"


@dataclass(frozen=True, slots=True)
class Problem:
    kind: ProblemKind
    summary: str  # may quote untrusted text: renderers sanitise and escape it
    hint: str = ""
    suggestions: tuple[str, ...] = ()
    retry_after: float | None = None
    tracking_id: str | None = None
    operator_detail: str | None = None


def retry_hint(seconds: float) -> str:
    """When to ask again: in seconds up to 90 s, in minutes (rounded up) beyond ("Try again in 35 min.")."""
    if seconds <= 90:
        return f"Try again in {seconds:.0f} s."
    return f"Try again in {math.ceil(seconds / 60)} min."


def explain(exc: Exception) -> Problem:
    """Map a lookup failure to a `Problem`; re-raise anything that is not a lookup failure."""
    if isinstance(exc, QueryError | InvalidDeviceReference):
        return Problem(ProblemKind.BAD_INPUT, str(exc))
    if isinstance(exc, DeviceNotFound):
        return Problem(
            ProblemKind.NOT_FOUND,
            f"No device in Defender matches '{exc.reference}'.",
            "Check the spelling, or use the 40-character machine id from the Defender portal.",
            suggestions=exc.suggestions,
        )
    if isinstance(exc, PermissionDenied):
        return Problem(ProblemKind.PERMISSION, f"Defender refused the request: {exc.message}", PERMISSION_HINT)
    if isinstance(exc, Throttled):
        return Problem(
            ProblemKind.THROTTLED,
            "Defender is throttling the bot's requests.",
            retry_hint(exc.retry_after),
            retry_after=exc.retry_after,
            tracking_id=exc.target,
        )
    if isinstance(exc, BudgetExhausted):
        return Problem(
            ProblemKind.BUDGET,
            "The bot has used its Defender call budget for the moment (it keeps under Defender's rate limits).",
            retry_hint(exc.retry_after),
            retry_after=exc.retry_after,
        )
    if isinstance(exc, AuthError):
        return Problem(
            ProblemKind.AUTH,
            "The bot could not sign in to Defender.",
            "An admin should check the bot's configuration and logs.",
            tracking_id=exc.target,
            operator_detail=str(exc),
        )
    if isinstance(exc, DefenderUnavailable):
        return Problem(
            ProblemKind.UNAVAILABLE,
            "Defender could not be reached.",
            "Try again in a minute.",
            tracking_id=exc.target,
            operator_detail=exc.message,
        )
    if isinstance(exc, BadResponse | DefenderError):
        return Problem(
            ProblemKind.BAD_RESPONSE,
            "Defender sent an answer the bot could not use.",
            "Try again later; if it persists, an admin should check the bot's logs.",
            tracking_id=exc.target,
            operator_detail=exc.message,
        )
    raise exc
