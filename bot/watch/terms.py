"""How long a watch runs, and which alerts it reports on."""

from __future__ import annotations

from datetime import timedelta

from bot.alerts.query import AlertFilters, parse_query
from bot.state.watches import Watch

DEFAULT_DURATION = timedelta(hours=8)
MAX_DURATION = timedelta(days=7)


def watch_filters(watch: Watch) -> AlertFilters:
    """The filters a watch reports on, as stored (`AlertFilters.as_query()`)."""
    return parse_query(f"{watch.machine_id} {watch.filter_text}").filters
