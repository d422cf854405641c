"""Watches, the last-seen state of a watched device's alerts, and the changes the poller reports."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.alerts.query import AlertFilters, parse_query

DEFAULT_DURATION = timedelta(hours=8)
MAX_DURATION = timedelta(days=7)


class WatchStatus(enum.Enum):
    ACTIVE = "active"
    PAUSED = "paused"  # Slack refused to post (channel archived, bot removed); shown by `watches`
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class Watch:
    id: int
    channel: str
    machine_id: str
    device_name: str
    filter_text: str  # `AlertFilters.as_query()`: the filters this watch reports on
    created_by: str
    created_at: datetime
    expires_at: datetime
    root_ts: str | None
    status: WatchStatus
    pause_reason: str | None
    last_checked_at: datetime | None

    @property
    def filters(self) -> AlertFilters:
        return parse_query(f"{self.machine_id} {self.filter_text}").filters


@dataclass(frozen=True, slots=True)
class AlertState:
    """What the poller remembers of one alert, to tell what changed."""

    status: str
    assigned_to: str | None
    last_update: datetime | None


class ChangeKind(enum.Enum):
    NEW = "new"
    STATUS = "status"
    ASSIGNMENT = "assignment"
    ENDED = "ended"  # the watch itself ended (expired or stopped)


@dataclass(frozen=True, slots=True)
class Change:
    """One thing worth a line in the thread; `key` makes it reportable once per watch."""

    kind: ChangeKind
    alert_id: str
    title: str = ""
    severity: str = ""
    category: str = ""
    old: str | None = None
    new: str | None = None
    classification: str | None = None
    determination: str | None = None
    at: str | None = None  # the alert's lastUpdateTime: tells A→B→A→B transitions apart

    @property
    def key(self) -> str:
        if self.kind is ChangeKind.ENDED:
            return ChangeKind.ENDED.value  # a watch ends once, however often (and by whom) it is ended
        return f"{self.kind.value}|{self.alert_id}|{self.new or ''}|{self.at or ''}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Change:
        return cls(**{**data, "kind": ChangeKind(data["kind"])})


@dataclass(frozen=True, slots=True)
class PendingReply:
    """Changes found in one check of one watch, recorded but not yet confirmed posted."""

    watch_id: int
    check_id: int
    changes: tuple[Change, ...]
    attempted_at: datetime | None  # set when a post was tried; the post may have reached Slack

    @property
    def reference(self) -> str:
        """Carried in the Slack message's metadata, so a post that happened before a crash can be found."""
        return f"{self.watch_id}:{self.check_id}"
