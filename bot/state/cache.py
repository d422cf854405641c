"""What the alert service asks of shared state, with the in-process default (nothing is shared).

`AlertService` keeps its process-local `cachetools` caches in front either way; with `BOT_STATE_URL=redis://…`
it also reads and writes through a `SharedCache` (`bot/shared/redis_cache.py`) and runs Defender calls
under its cluster-wide single flight. This module imports nothing from `redis`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol, TypeVar

from bot.defender.models import Alert, Machine

_T = TypeVar("_T")


class SharedCache(Protocol):
    def get_alerts(self, machine_id: str) -> tuple[tuple[Alert, ...], datetime] | None:
        """A device's full alert list and when it was fetched (wall clock), if some process cached it."""
        ...

    def put_alerts(self, machine_id: str, alerts: tuple[Alert, ...], fetched_at: datetime) -> None: ...

    def get_machine(self, machine_id: str) -> tuple[bool, Machine | None]:
        """(known, details): known with None details means "the app may not read details"."""
        ...

    def put_machine(self, machine_id: str, machine: Machine | None) -> None: ...
    def get_name(self, name: str) -> str | None: ...
    def put_name(self, name: str, machine_id: str) -> None: ...

    def single_flight(self, key: str, work: Callable[[], _T], landed: Callable[[], _T | None]) -> tuple[_T, bool]:
        """Run `work` in one process of the cluster at a time for `key`; the others wait for `landed()`.

        Returns (value, True) when the value came from another process's call.
        """
        ...


class NothingShared:
    """The single-process default: no shared cache; the service's own single flight is all there is."""

    def get_alerts(self, machine_id: str) -> tuple[tuple[Alert, ...], datetime] | None:
        return None

    def put_alerts(self, machine_id: str, alerts: tuple[Alert, ...], fetched_at: datetime) -> None:
        return None

    def get_machine(self, machine_id: str) -> tuple[bool, Machine | None]:
        return False, None

    def put_machine(self, machine_id: str, machine: Machine | None) -> None:
        return None

    def get_name(self, name: str) -> str | None:
        return None

    def put_name(self, name: str, machine_id: str) -> None:
        return None

    def single_flight(self, key: str, work: Callable[[], _T], landed: Callable[[], _T | None]) -> tuple[_T, bool]:
        return work(), False
