"""The simulator behind an httpx transport: the Defender and Graph clients talk to it as to the network."""

from __future__ import annotations

import httpx

from bot.defender.simulator.tenant import SimulatedTenant


class SimulatorTransport(httpx.BaseTransport):
    """httpx transport that routes every request to a SimulatedTenant instead of the network."""

    def __init__(self, tenant: SimulatedTenant) -> None:
        self.tenant = tenant

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Serve `request` from the simulated tenant (thread-safe; the tenant holds its own lock)."""
        return self.tenant.serve(request)
