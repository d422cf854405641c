"""The naive baseline: a plain Bolt app with default settings, the way a first version of the bot would look.

It acknowledges, then calls Defender synchronously for the device's alerts (`GET /api/machines/{id}/alerts`:
no cache, no single flight, no budget, no retries, first page only) and posts a text card to the command's
`response_url`. Bolt's defaults apply: `process_before_response=False`, so the listener runs on Bolt's own pool
of 5 threads while the request thread waits (at most 3 s) for `ack()`. A hostname costs one more call first
(`GET /api/machines/{name}`, exact names only: no prefix search).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.alerts.query import QueryError, parse_query
from bot.defender.models import parse_alert
from bot.defender.simulator import SIMULATOR_BASE_URL, SimulatedTenant, SimulatorTransport

COMMAND = "/device-alerts"
TOP_ALERTS = 10


def card_text(device: str, alerts: list[dict[str, Any]]) -> str:
    """The baseline's card: counts by severity and the first few alerts, as mrkdwn text."""
    counts = Counter(str(alert.get("severity")) for alert in alerts)
    lines = [f"*{device}* · {len(alerts)} alerts", " · ".join(f"{name} {n}" for name, n in counts.most_common())]
    lines += [f"• [{a.get('severity')}] {a.get('title')} ({a.get('status')})" for a in alerts[:TOP_ALERTS]]
    return "\n".join(lines)


def defender_client(tenant: SimulatedTenant) -> httpx.Client:
    """The same Defender double the real bot talks to, through the same in-process transport."""
    return httpx.Client(
        base_url=SIMULATOR_BASE_URL, transport=SimulatorTransport(tenant), headers={"Authorization": "Bearer baseline"}
    )


def lookup_text(defender: httpx.Client, text: str) -> str:
    """One lookup, start to finish: parse, one Defender call, filter, render."""
    try:
        query = parse_query(text)
    except QueryError as exc:
        return f"Sorry: {exc}"
    machine_id = query.device.value
    if not query.device.is_machine_id:
        found = defender.get(f"/api/machines/{machine_id}")
        if found.status_code != 200:
            return f"Defender answered {found.status_code}: try again later."
        machine_id = str(found.json()["id"])
    response = defender.get(f"/api/machines/{machine_id}/alerts")
    if response.status_code != 200:
        return f"Defender answered {response.status_code}: try again later."
    now = datetime.now(UTC)
    alerts = [raw for raw in response.json()["value"] if query.filters.matches(parse_alert(raw), now)]
    return card_text(query.device.value, alerts)


def build_baseline(tenant: SimulatedTenant, *, bot_token: str, signing_secret: str, slack_api_url: str) -> App:
    """A Bolt app with default settings (constructing it calls `auth.test`, as any Bolt app does)."""
    app = App(client=WebClient(token=bot_token, base_url=slack_api_url), signing_secret=signing_secret)
    defender = defender_client(tenant)

    @app.command(COMMAND)
    def lookup(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        text = str(command.get("text", ""))
        ack(f"Looking up {text}…")
        respond(text=lookup_text(defender, text), response_type="in_channel")

    return app
