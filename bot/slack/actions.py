"""Button identifiers and the compact, authenticated payload a card's buttons carry.

A button's `value` comes back from Slack in an interaction, and anyone who can send an interaction
to the bot can put anything in it. So every value the bot writes is sealed with an HMAC keyed from
the app's signing secret: a crafted interaction cannot name a device nobody looked up. Behind the
seal the value is parsed again with the strict command grammar, and must name a machine id.

While a signing secret is rotated, values sealed under the previous one still open (it is kept as a
previous key): the cards already in channels keep working until it is removed (docs/operations.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from bot.alerts.query import AlertFilters, DeviceQuery, QueryError, parse_query
from bot.slack.blockkit import MAX_BUTTON_VALUE

REFRESH = "device_alerts.refresh"
OPEN_DEVICE = "device_alerts.open_device"
WATCH = "device_alerts.watch"
UNWATCH = "device_alerts.unwatch"

_KEY_LABEL = b"device-alerts/button-value/v1"  # a distinct key, so a button MAC is never a request signature
_MAC_BYTES = 16
_MAC_CHARS = 22  # base64url of 16 bytes, unpadded
_SEPARATOR = "."


class InvalidButton(QueryError):
    """A button value this bot did not write, or one that was changed on the way."""


class ButtonSeal:
    """Seals button values with HMAC-SHA256 (truncated to 128 bits) and opens them in constant time.

    Values are sealed with `key`; they open under `key` or any of the `previous` keys (a rotation's overlap).
    """

    __slots__ = ("_key", "_previous")

    def __init__(self, key: bytes, *, previous: tuple[bytes, ...] = ()) -> None:
        if any(len(k) < 16 for k in (key, *previous)):
            raise ValueError("a button key needs at least 16 bytes")
        self._key = key
        self._previous = previous

    @staticmethod
    def _derive(secret: str) -> bytes:
        return hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest()

    @classmethod
    def from_secret(cls, secret: str, *previous: str) -> ButtonSeal:
        """Derive the key from the signing secret (or, in Socket Mode without one, the app-level token);
        `previous` are secrets rotated away whose buttons should still open."""
        return cls(cls._derive(secret), previous=tuple(cls._derive(p) for p in previous if p and p != secret))

    def __repr__(self) -> str:
        return "ButtonSeal(***)"

    def _mac(self, value: str, key: bytes | None = None) -> str:
        # A lone surrogate (JSON can carry one) must not raise: it only makes a MAC that matches nothing.
        data = value.encode("utf-8", "surrogatepass")
        digest = hmac.new(key or self._key, data, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def seal(self, value: str) -> str:
        """`<mac>.<value>`: the value stays readable; only its integrity is protected."""
        return f"{self._mac(value)}{_SEPARATOR}{value}"

    def open(self, sealed: str) -> str:
        """The value inside a sealed string; `InvalidButton` when the seal is missing or wrong."""
        if len(sealed) > MAX_BUTTON_VALUE:
            raise InvalidButton("button payload too long")
        mac, separator, value = sealed.partition(_SEPARATOR)
        if not separator or len(mac) != _MAC_CHARS or not mac.isascii():
            raise InvalidButton("button payload is not sealed")
        # Every key is tried, so the time taken does not tell which one matched.
        matches = [hmac.compare_digest(mac, self._mac(value, key)) for key in (self._key, *self._previous)]
        if not any(matches):
            raise InvalidButton("button payload seal does not match")
        return value


def lookup_value(machine_id: str, filters: AlertFilters) -> str:
    """`<machine id> [filters]`: enough to repeat the lookup, nothing else (sealed by the card renderer)."""
    return f"{machine_id} {filters.as_query()}".strip()


def parse_lookup_value(value: str) -> DeviceQuery:
    """Read an opened button value back; raise `QueryError` for anything this code would not have written."""
    if len(value) > MAX_BUTTON_VALUE:
        raise QueryError("button payload too long")
    query = parse_query(value)
    if not query.device.is_machine_id:
        raise QueryError("button payload does not name a machine id")
    return query
