"""Parsers for the variables whose values have a shape of their own (ids, scope, state URL, audit target, policy).

Each raises `ValueError` (said as `expected …, got …`) or `Invalid` (said as itself) for a value it refuses.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bot.access.policy import GroupPolicy, PolicyError, parse_group_policy
from bot.config.kinds import Invalid
from bot.state.sqlite import sqlite_path
from bot.state.urls import RedactedUrl, is_redis_url, parse_redis_url, redact

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_TENANT_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")


def guid(text: str) -> str:
    if not _GUID.fullmatch(text):
        raise ValueError
    return text


def tenant(text: str) -> str:
    """A tenant id (GUID) or a primary domain such as contoso.onmicrosoft.com."""
    if not (_GUID.fullmatch(text) or _TENANT_DOMAIN.fullmatch(text)):
        raise ValueError
    return text


def scope(text: str) -> str:
    if not text.startswith("https://") or not urlsplit(text).hostname or not text.endswith("/.default"):
        raise ValueError
    return text


def state_url(text: str) -> str:
    """`sqlite:///…`, or a checked `redis[s]://…` whose `repr` hides the password."""

    if is_redis_url(text):
        try:
            parse_redis_url(text)
        except ValueError as exc:  # said without the value: it may hold a password
            raise Invalid(f"{exc} (expected redis[s]://[:password@]host[:port][/db])") from None
        return RedactedUrl(text)  # its repr (in Settings) hides the password
    sqlite_path(text)  # raises ValueError for anything but sqlite:///…
    return text


def redis_url(text: str) -> str:
    """A platform's Redis URL (Heroku's `REDIS_URL`): like `state_url`, but only `redis[s]://…`."""
    if not is_redis_url(text):
        raise ValueError
    return state_url(text)


def without_tls_verification(url: str) -> str:
    """`url` with `ssl_cert_reqs=none` added when it is `rediss://` and does not say already how to verify."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if parts.scheme != "rediss" or any(key == "ssl_cert_reqs" for key, _ in query):
        return url
    query.append(("ssl_cert_reqs", "none"))
    return RedactedUrl(urlunsplit((*parts[:3], urlencode(query), parts.fragment)))


def bind_host(text: str) -> str:
    """An IP address (`0.0.0.0`, `127.0.0.1`, `::`) or a host name such as `localhost`."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if len(text) > 253 or not re.fullmatch(rf"{_LABEL}(?:\.{_LABEL})*", text) or text.rsplit(".", 1)[-1].isdigit():
        raise ValueError  # a name ending in digits is a mistyped address, not a host name
    return text


def redact_url(text: str) -> str:

    try:
        return redact(text)
    except ValueError:  # not even a URL (a bad port, say): nothing to keep
        return "…"


def audit_target(text: str) -> str:
    """`stderr`, `off`, or a file in an existing directory."""
    if text.lower() in ("stderr", "off"):
        return text.lower()
    if not Path(text).parent.is_dir() or Path(text).is_dir():
        raise ValueError
    return text


def group_policy(text: str) -> GroupPolicy:
    try:
        return parse_group_policy(text)
    except PolicyError as exc:
        raise Invalid(str(exc)) from None
