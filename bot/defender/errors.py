"""Error taxonomy for everything that can go wrong between the bot and Defender.

Callers branch on the exception type, never on message text; each error carries what a user or an
operator needs next (the remaining wait, the missing role, Defender's tracking id).
"""

from __future__ import annotations


class DefenderError(Exception):
    """Base class: a Defender lookup did not produce data."""

    def __init__(self, message: str, *, target: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Defender's tracking id for the failed request: support asks for it.
        self.target = target


class InvalidDeviceReference(DefenderError):
    """The text given is neither a machine id nor a plausible hostname; nothing was sent."""


class DeviceNotFound(DefenderError):
    """Defender knows no device by that id or name."""

    def __init__(self, reference: str, *, suggestions: tuple[str, ...] = (), target: str | None = None) -> None:
        super().__init__(f"no device matches {reference!r}", target=target)
        self.reference = reference
        # Hostnames that start with the reference, for a "did you mean" answer.
        self.suggestions = suggestions


class PermissionDenied(DefenderError):
    """The app's token lacks a role; the message keeps Defender's 'required roles' text.

    `permission` names the application permission the refused call needs when the client knows it (Microsoft
    Graph's 403 does not reliably say), so the message can tell an admin exactly what to grant.
    """

    def __init__(self, message: str, *, permission: str | None = None, target: str | None = None) -> None:
        super().__init__(message, target=target)
        self.permission = permission


class Throttled(DefenderError):
    """Defender answered 429, or an earlier 429's Retry-After has not passed yet."""

    def __init__(self, retry_after: float, *, target: str | None = None) -> None:
        super().__init__(f"Defender is throttling this app; retry in {retry_after:.0f} s", target=target)
        self.retry_after = retry_after


class DefenderUnavailable(DefenderError):
    """Defender (or the identity provider) could not be reached or kept failing with 5xx."""


class BadResponse(DefenderError):
    """Defender answered with something that is not the documented shape."""


class AuthError(DefenderError):
    """The identity provider refused to issue a token, or the API rejected it.

    `code` is the AADSTS number when one was given; `hint` says what to check, in plain words.
    """

    def __init__(self, message: str, *, code: str | None = None, hint: str, target: str | None = None) -> None:
        super().__init__(message, target=target)
        self.code = code
        self.hint = hint

    def __str__(self) -> str:
        prefix = f"AADSTS{self.code}: " if self.code else ""
        return f"{prefix}{self.message} ({self.hint})"
