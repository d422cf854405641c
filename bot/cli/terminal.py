"""Plain-text rendering of a device lookup for the terminal (the CLI and the demo).

Alert text is attacker-influenced: every untrusted string passes `bot.sanitize.clean`, which removes
control and format characters (ANSI escapes, bidi overrides, zero-width characters).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bot.alerts.result import DeviceAlerts
from bot.defender.models import Alert
from bot.defender.portal import alert_url, device_url
from bot.text import ago, clean, counts, since

TITLE_LIMIT = 110


@dataclass(frozen=True, slots=True)
class PortalContext:
    portal: str
    tenant_id: str | None


def _alert_lines(alert: Alert, links: PortalContext, now: datetime) -> list[str]:
    details = [
        clean(alert.category or "", 40),
        clean(alert.detection_source or "", 40),
        f"assigned to {clean(alert.assigned_to, 60)}" if alert.assigned_to else "unassigned",
        f"last activity {since(alert.last_activity, now)}",
    ]
    return [
        f"  [{alert.severity.label:<13}] {alert.status.label:<11} {clean(alert.title, TITLE_LIMIT)}",
        f"  {'':15} {' · '.join(d for d in details if d)}",
        f"  {'':15} {alert_url(links.portal, alert.id, links.tenant_id)}",
    ]


def render(result: DeviceAlerts, links: PortalContext, *, limit: int = 10, now: datetime | None = None) -> str:
    """The lookup as a readable block of text: header, freshness, counts, then the top alerts."""
    now = now or datetime.now(UTC)
    shown = len(result.alerts)
    header = f"{clean(result.display_name, 120)}: {shown} alert{'s' if shown != 1 else ''}"
    if shown != result.total:
        header += f" matching filters ({result.total} in all)"
    lines = [header]
    machine = result.machine
    facts = [f"machine {result.machine_id}"]
    if machine is not None:
        os_name = " ".join(clean(p, 40) for p in (machine.os_platform, machine.os_version) if p)
        facts += [os_name, f"health {machine.health_status.value}"]
        facts += [f"risk {machine.risk_score.value}"] if machine.risk_score else []
        facts += [f"exposure {machine.exposure_level.value}"] if machine.exposure_level else []
        facts += [f"group {clean(machine.rbac_group_name, 60)}"] if machine.rbac_group_name else []
    lines.append("  " + " · ".join(f for f in facts if f))
    as_of = result.fetched_at.astimezone(UTC).strftime("%H:%M UTC")
    if result.stale_reason:
        lines.append(f"  stale: {result.stale_reason}, data from {ago(result.age)} ago")
    elif result.from_cache:
        lines.append(f"  as of {as_of} · cached {ago(result.age)}")
    else:
        lines.append(f"  as of {as_of} · fresh from Defender")
    if not result.filters.is_empty:
        lines.append(f"  filters: {result.filters.describe()}")
    lines.append("")
    lines.append("  Severity  " + counts((s.label, n) for s, n in result.severity_counts().items()))
    lines.append("  Status    " + counts((s.label, n) for s, n in result.status_counts().items()))
    if result.alerts:
        lines += ["", "  Top alerts"]
        for alert in result.alerts[:limit]:
            lines += _alert_lines(alert, links, now)
        if shown > limit:
            lines.append(f"  …and {shown - limit} more: {device_url(links.portal, result.machine_id)}")
    return "\n".join(lines)
