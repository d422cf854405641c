"""Button identifiers and the compact payload a card's buttons carry.

A button's `value` comes back from Slack in an interaction and is never trusted: it is parsed with the
same strict grammar as typed commands, and it must name a machine id, not a hostname.
"""

from __future__ import annotations

from bot.alerts.query import AlertFilters, DeviceQuery, QueryError, parse_query
from bot.slack.blockkit import MAX_BUTTON_VALUE

REFRESH = "device_alerts.refresh"
OPEN_DEVICE = "device_alerts.open_device"
WATCH = "device_alerts.watch"
UNWATCH = "device_alerts.unwatch"


def lookup_value(machine_id: str, filters: AlertFilters) -> str:
    """`<machine id> [filters]`: enough to repeat the lookup, nothing else."""
    return f"{machine_id} {filters.as_query()}".strip()


def parse_lookup_value(value: str) -> DeviceQuery:
    """Read a button value back; raise `QueryError` for anything this code would not have written."""
    if len(value) > MAX_BUTTON_VALUE:
        raise QueryError("button payload too long")
    query = parse_query(value)
    if not query.device.is_machine_id:
        raise QueryError("button payload does not name a machine id")
    return query
