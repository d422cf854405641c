"""Parsers for the variables whose values have a shape of their own (ids, scope, state URL, audit target, policy).

Each raises `ValueError` (said as `expected …, got …`) or `Invalid` (said as itself) for a value it refuses.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

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
