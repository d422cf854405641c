"""`BOT_STATE_URL` values: which backend they name, and a Redis URL checked and shown without its password.

This module does not import `redis`, so the configuration can validate a URL in a process that never
connects to one.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDIS_SCHEMES = ("redis", "rediss")
DEFAULT_PREFIX = "device-alerts"
# Query options passed through to redis-py (TLS against managed servers with their own CA); `prefix` is ours.
_PASS_THROUGH = ("ssl_cert_reqs", "ssl_ca_certs")
_PREFIX_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


def is_redis_url(text: str) -> bool:
    return urlsplit(text).scheme in REDIS_SCHEMES


class RedactedUrl(str):
    """A URL string whose `repr` hides the password (it sits in `Settings`, whose repr may be logged)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(redact(str(self)))


def redact(url: str) -> str:
    """The URL with any password replaced by `***` (for logs and error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, parts.fragment))


@dataclass(frozen=True, slots=True)
class RedisUrl:
    """A checked `redis://` or `rediss://` URL: what redis-py connects to, and our key prefix."""

    client_url: str  # handed to `redis.Redis.from_url` (holds the password, if any)
    prefix: str
    tls: bool
    db: int

    @property
    def shown(self) -> str:
        return redact(self.client_url)


def parse_redis_url(text: str) -> RedisUrl:
    """Check `redis[s]://[[user]:password@]host[:port][/db][?prefix=…]`; `ValueError` names what is wrong.

    The message never contains the password.
    """
    parts = urlsplit(text)
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError("expected redis:// or rediss://")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise ValueError("the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("a host is required")
    if parts.fragment:
        raise ValueError("a #fragment is not allowed")
    path = parts.path.strip("/")
    if path and not (path.isdigit() and int(path) < 1000):
        raise ValueError("the path is the database number, e.g. /0")
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = DEFAULT_PREFIX
    passed: list[tuple[str, str]] = []
    for key, value in query:
        if key == "prefix":
            if not value or len(value) > 64 or not set(value) <= _PREFIX_CHARS:
                raise ValueError("prefix: 1-64 letters, digits, '-', '_', '.' or ':'")
            prefix = value
        elif key in _PASS_THROUGH:
            passed.append((key, value))
        else:
            raise ValueError(f"unknown option {key!r} (known: prefix, {', '.join(_PASS_THROUGH)})")
    client_url = urlunsplit((parts.scheme, parts.netloc, f"/{path or 0}", urlencode(passed), ""))
    return RedisUrl(client_url, prefix, parts.scheme == "rediss", int(path or 0))
