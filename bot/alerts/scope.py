"""Which Defender device groups a lookup may see.

The access policy (`bot.access`) decides a request's scope; the alert service enforces it on every
device it resolves, answering a device outside the scope exactly as it answers an unknown one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeviceScope:
    """The Defender device groups a request may see; `groups=None` means every device."""

    groups: frozenset[str] | None = None

    @property
    def everything(self) -> bool:
        return self.groups is None

    @property
    def empty(self) -> bool:
        return self.groups is not None and not self.groups

    def allows(self, group: str | None) -> bool:
        """A device in no group is visible only to an unrestricted scope."""
        if self.groups is None:
            return True
        return group is not None and group.casefold() in self.groups

    def __or__(self, other: DeviceScope) -> DeviceScope:
        if self.groups is None or other.groups is None:
            return EVERY_DEVICE
        return DeviceScope(self.groups | other.groups)

    def __and__(self, other: DeviceScope) -> DeviceScope:
        if self.groups is None:
            return other
        if other.groups is None:
            return self
        return DeviceScope(self.groups & other.groups)

    def describe(self) -> str:
        return "every device group" if self.groups is None else ", ".join(sorted(self.groups)) or "no device group"


EVERY_DEVICE = DeviceScope()
NO_DEVICE = DeviceScope(frozenset())
