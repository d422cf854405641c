"""An alert's evidence as people read it: one kind and one identifying value per item, from either API.

Defender for Endpoint lists evidence (with `$expand=evidence`) as flat entities with an `entityType`; Microsoft
Graph as typed objects (`#microsoft.graph.security.fileEvidence`, …) with nested details. Both become the same
`Evidence` tuples; kinds nobody acts on from a chat (mailboxes, registry values, …) are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Evidence:
    """`kind` is `File`, `Process`, `Ip`, `Url` or `User`; `value` the path, command line, address or account."""

    kind: str
    value: str


def _text(raw: object, *path: str) -> str | None:
    """The string at `path` inside nested objects, or None."""
    for key in path:
        if not isinstance(raw, Mapping):
            return None
        raw = raw.get(key)
    return str(raw) if isinstance(raw, str | int) and not isinstance(raw, bool) and str(raw) else None


def _joined(folder: str | None, name: str | None) -> str | None:
    if folder and name and not folder.endswith(name):
        return folder.rstrip("\\/") + "\\" + name
    return folder or name


def _account(name: str | None, domain: str | None) -> str | None:
    return (f"{domain}\\{name}" if domain else name) if name else None


_MDE: dict[str, tuple[str, Callable[[Mapping[str, Any]], str | None]]] = {
    "file": ("File", lambda e: _joined(_text(e, "filePath"), _text(e, "fileName")) or _text(e, "sha256")),
    "process": ("Process", lambda e: _text(e, "processCommandLine") or _text(e, "fileName")),
    "ip": ("Ip", lambda e: _text(e, "ipAddress")),
    "url": ("Url", lambda e: _text(e, "url")),
    "user": ("User", lambda e: _account(_text(e, "accountName"), _text(e, "domainName"))),
}

_GRAPH: dict[str, tuple[str, Callable[[Mapping[str, Any]], str | None]]] = {
    "fileevidence": (
        "File",
        lambda e: (
            _joined(_text(e, "fileDetails", "filePath"), _text(e, "fileDetails", "fileName"))
            or _text(e, "fileDetails", "sha256")
        ),
    ),
    "processevidence": (
        "Process",
        lambda e: _text(e, "processCommandLine") or _text(e, "imageFile", "fileName"),
    ),
    "ipevidence": ("Ip", lambda e: _text(e, "ipAddress")),
    "urlevidence": ("Url", lambda e: _text(e, "url")),
    "userevidence": (
        "User",
        lambda e: _account(_text(e, "userAccount", "accountName"), _text(e, "userAccount", "domainName")),
    ),
}


def _collect(
    items: object, kind_of: Callable[[Mapping[str, Any]], str], table: Mapping[str, tuple[str, Any]]
) -> tuple[Evidence, ...]:
    found: list[Evidence] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping) or (entry := table.get(kind_of(item))) is None:
            continue
        kind, read = entry
        if value := read(item):
            found.append(Evidence(kind, value))
    return tuple(dict.fromkeys(found))  # the same file or address named twice is shown once


def parse_mde_evidence(items: object) -> tuple[Evidence, ...]:
    """Defender for Endpoint's `evidence` list."""
    return _collect(items, lambda item: str(item.get("entityType") or "").casefold(), _MDE)


def parse_graph_evidence(items: object) -> tuple[Evidence, ...]:
    """Microsoft Graph's `evidence` list (device evidence is the alert's devices, not listed here)."""
    return _collect(items, lambda item: str(item.get("@odata.type") or "").rsplit(".", 1)[-1].casefold(), _GRAPH)
