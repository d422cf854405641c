"""Validation of the device references users type, before any of them reaches a URL.

A reference is either a Defender machine id (40 hex characters) or a hostname/FQDN. Everything else,
including path tricks (`../`, `%2e`, `/`, `?`, `#`), quotes, spaces and control characters, is refused
here, so the client never has to trust its input.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import quote

from bot.defender.errors import InvalidDeviceReference

MAX_HOSTNAME_LENGTH = 255

_MACHINE_ID = re.compile(r"[0-9a-fA-F]{40}")
# Labels of letters, digits, '-' and '_' joined by single dots, starting with a letter or digit.
_HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*\.?")


class RefKind(enum.Enum):
    MACHINE_ID = "machine id"
    HOSTNAME = "hostname"


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """A validated device reference: safe to put in a URL path or an OData literal."""

    kind: RefKind
    value: str

    @property
    def is_machine_id(self) -> bool:
        return self.kind is RefKind.MACHINE_ID


def parse_device_ref(text: str) -> DeviceRef:
    """Classify and validate `text`; raise `InvalidDeviceReference` with the reason otherwise."""
    if not text:
        raise InvalidDeviceReference("a device reference is required (a 40-character machine id or a hostname)")
    if _MACHINE_ID.fullmatch(text):
        return DeviceRef(RefKind.MACHINE_ID, text.lower())
    if len(text) > MAX_HOSTNAME_LENGTH:
        raise InvalidDeviceReference(f"a hostname is at most {MAX_HOSTNAME_LENGTH} characters")
    if not _HOSTNAME.fullmatch(text):
        raise InvalidDeviceReference(
            "not a machine id (40 hex characters) or a hostname (letters, digits, '-', '_' and '.')"
        )
    return DeviceRef(RefKind.HOSTNAME, text.rstrip(".").lower())


def path_segment(value: str) -> str:
    """Percent-encode one URL path segment; validated references need none, this is defence in depth."""
    return quote(value, safe="")


def odata_literal(value: str) -> str:
    """Quote `value` as an OData string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"
