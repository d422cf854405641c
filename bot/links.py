"""Deep links into the Microsoft Defender portal, with every id percent-encoded."""

from __future__ import annotations

from urllib.parse import quote, urlencode


def alert_url(portal: str, alert_id: str, tenant_id: str | None = None) -> str:
    query = f"?{urlencode({'tid': tenant_id})}" if tenant_id else ""
    return f"{portal}/alerts/{quote(alert_id, safe='')}{query}"


def device_url(portal: str, machine_id: str) -> str:
    return f"{portal}/machines/v2/{quote(machine_id, safe='')}/overview"
