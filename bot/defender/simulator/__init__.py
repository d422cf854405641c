"""Built-in Microsoft Defender for Endpoint simulator.

A simulated tenant that answers the same HTTP API as Defender, mounted into httpx as a transport, so the bot's real
client code (auth header, paging, filters, rate-limit and error handling) runs end to end with no network and no
credentials. `dataset` holds the deterministic, deliberately awkward data; `odata` reads requests and pages answers
as Defender does; `throttle` counts calls per minute and per hour; `tenant` serves. `fleet` adds an enterprise-sized
fleet made on demand (`SimulatedTenant(fleet=FleetSpec(devices=100_000))`), re-onboarded devices included.
The same tenant also answers Microsoft Graph's security alerts_v2 (`graph`) and runHuntingQuery over `DeviceInfo`
(`hunting`), on any host (`GRAPH_SIMULATOR_BASE_URL` by convention).
"""

from bot.defender.simulator.dataset import (
    AAD_TENANT_ID,
    BUSY_HOSTNAME,
    DUPLICATE_HOSTNAME,
    GRAPH_SIMULATOR_BASE_URL,
    HOSTILE_HOSTNAME,
    QUIET_HOSTNAME,
    SIMULATOR_BASE_URL,
    Json,
)
from bot.defender.simulator.fleet import FleetSpec
from bot.defender.simulator.tenant import SimulatedTenant
from bot.defender.simulator.transport import SimulatorTransport

__all__ = [
    "AAD_TENANT_ID",
    "BUSY_HOSTNAME",
    "DUPLICATE_HOSTNAME",
    "GRAPH_SIMULATOR_BASE_URL",
    "HOSTILE_HOSTNAME",
    "QUIET_HOSTNAME",
    "SIMULATOR_BASE_URL",
    "FleetSpec",
    "Json",
    "SimulatedTenant",
    "SimulatorTransport",
]
