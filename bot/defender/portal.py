"""Deep links into the Microsoft Defender portal, with every id percent-encoded."""

from __future__ import annotations

from urllib.parse import quote, urlencode


def _segment(value: str) -> str:
    # Ids come from Defender's JSON, which can carry lone surrogates: they become "?", never an exception.
    return quote(value, safe="", errors="replace")


def alert_url(portal: str, alert_id: str, tenant_id: str | None = None) -> str:
    query = f"?{urlencode({'tid': tenant_id})}" if tenant_id else ""
    return f"{portal}/alerts/{_segment(alert_id)}{query}"


def device_url(portal: str, machine_id: str) -> str:
    return f"{portal}/machines/v2/{_segment(machine_id)}/overview"


def incident_url(portal: str, incident_id: int, tenant_id: str | None = None) -> str:
    query = f"?{urlencode({'tid': tenant_id})}" if tenant_id else ""
    return f"{portal}/incidents/{incident_id}{query}"
