"""Where device alerts come from: what the alert service and the watch poller ask of a data source.

Two sources answer it. `DefenderClient` (the Defender for Endpoint API) asks per device. Microsoft Graph's
security API cannot ask for one device's alerts, so `bot.alerts.mirror.GraphAlertSource` keeps a mirror of
the tenant's recent alerts and answers from it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from bot.defender.limits import Priority
from bot.defender.models import Alert, Machine


class AlertSource(Protocol):
    def get_device_alerts(self, machine_id: str, *, priority: Priority = ...) -> list[Alert]:
        """Every alert of one device (machine id); `DeviceNotFound` for an unknown one where the source can tell."""
        ...

    def get_machine(self, id_or_name: str, *, priority: Priority = ...) -> Machine:
        """The device with this machine id or exact hostname; `DeviceNotFound` when there is none."""
        ...

    def find_machines(self, hostname: str, *, prefix: bool = ..., priority: Priority = ...) -> list[Machine]:
        """Devices whose hostname equals (or starts with) `hostname`."""
        ...

    def list_alerts_updated_since(self, since: datetime, *, top: int = ..., priority: Priority = ...) -> list[Alert]:
        """Every alert in the tenant updated at or after `since` (the watch poller's delta)."""
        ...

    def close(self) -> None: ...
