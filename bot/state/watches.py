"""What a watch store keeps: watches, the last-seen state of their alerts, the changes found, and the store's protocol.

Both stores (`bot.state.sqlite`, `bot.state.redis.watches`) keep a watch as a row of text fields and map it
back with `watch_from_row`, so the two cannot drift apart.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, overload


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
    RESTORED = "restored"  # the store lost the watch (Redis emptied) and the poller created it again from memory


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
    by: str | None = None  # the Slack user who made the change from Slack (triage), when it was made there

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


@overload
def iso_time(moment: datetime) -> str: ...
@overload
def iso_time(moment: datetime | None) -> str | None: ...


def iso_time(moment: datetime | None) -> str | None:
    """How the stores write a moment: ISO 8601 in UTC."""
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def watch_from_row(row: Mapping[str, Any]) -> Watch:
    """A stored watch's fields (text, or the id as a number) → `Watch`; absent optional fields read as None."""
    return Watch(
        id=int(row["id"]),
        channel=row["channel"],
        machine_id=row["machine_id"],
        device_name=row["device_name"],
        filter_text=row["filter_text"],
        created_by=row["created_by"],
        created_at=datetime.fromisoformat(row["created_at"]),
        expires_at=datetime.fromisoformat(row["expires_at"]),
        root_ts=row.get("root_ts"),
        status=WatchStatus(row["status"]),
        pause_reason=row.get("pause_reason"),
        last_checked_at=parse_time(row.get("last_checked_at")),
    )


class StoreFailing(Exception):
    """The watch store cannot be written (a full disk, a read-only file, an I/O error). `reason` says which, in
    words for the person who asked: lookups still work, watches cannot be saved."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WatchStore(Protocol):
    def start_watch(
        self,
        *,
        channel: str,
        machine_id: str,
        device_name: str,
        filter_text: str,
        user: str,
        expires_at: datetime,
        now: datetime,
    ) -> tuple[Watch, bool]:
        """Create a watch, or extend the live one for this channel and device; True when created."""  # fmt: skip
        ...

    def watch(self, watch_id: int) -> Watch | None: ...
    def find_watch(self, channel: str, machine_id: str) -> Watch | None: ...
    def live_watches(self, channel: str | None = None) -> list[Watch]: ...
    def set_root(self, watch_id: int, ts: str) -> None: ...
    def set_status(self, watch_id: int, status: WatchStatus, reason: str | None = None) -> None: ...
    def known_state(self, watch_id: int) -> dict[str, AlertState]: ...

    def record_check(
        self, watch_id: int, state: dict[str, AlertState], changes: list[Change], checked_at: datetime
    ) -> int | None:
        """Save state and changes atomically; the check id when new changes were recorded."""
        ...

    def pending_replies(self) -> list[PendingReply]: ...
    def mark_attempted(self, reply: PendingReply, at: datetime) -> None: ...
    def mark_posted(self, reply: PendingReply, ts: str) -> None: ...
    def lost_data(self) -> bool:
        """True (once) when the store has lost what it held since this process last asked: Redis emptied by
        FLUSHDB or restarted without persistence. The first call only takes note of the store as it is."""
        ...

    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def try_lease(self, holder: str, now: float, ttl: float) -> bool: ...
    def release_lease(self, holder: str) -> None: ...
    def close(self) -> None: ...
