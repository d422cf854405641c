"""One bot process's watch machinery, built by hand: how the poller tests run checks and the crash tests restart.

A `Rig` is one "process": a SQLite store on a file, an alert service and Defender client on a fake clock (the
simulator's wall clock follows it), and `SlackWatches` posting to a `SlackStandIn` as in production. `api` is
`DEFENDER_API`: `mde` (a `DefenderClient`) or `graph` (the Graph alert mirror over a `GraphClient`).
`Rig.restart()` builds a second process on the same file, Slack and tenant. `publisher` wraps what the poller
posts through (a crash test's kill points); the rig keeps it as `Rig.publisher`. `ahead` sets the bot host's clock
that far ahead of Defender's (negative: behind); the simulator stamps alerts with Defender's time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.alerts.query import parse_query
from bot.alerts.service import AlertService
from bot.alerts.source import AlertSource
from bot.defender.auth import StaticTokenProvider
from bot.defender.client import DefenderClient
from bot.defender.simulator import AAD_TENANT_ID, SIMULATOR_BASE_URL, SimulatedTenant, SimulatorTransport
from bot.demo.clock import FakeClock
from bot.demo.standin import Posted, SlackStandIn
from bot.slack.cards import CardContext
from bot.slack.poster import Poster, web_client
from bot.slack.watching import SlackWatches
from bot.state.budget import RateBudget
from bot.state.sqlite import SqliteWatchStore
from bot.state.watches import Watch, WatchStore
from bot.watch.poller import CycleReport, Poller, Publisher
from tests.doubles.cards import TEST_SEAL
from tests.doubles.defender import graph_source, kind_of, machine_id
from tests.doubles.slack import reference

CHANNEL = "C0INCIDENT"
FIN_014 = "ws-fin-014.contoso.local"
FIN_015 = "ws-fin-015.contoso.local"
INTERVAL = 60.0
PORTAL = "https://security.microsoft.com"


@dataclass
class Rig:
    """One bot process's watch machinery; Defender (tenant), Slack (standin) and the clock outlive it."""

    path: Path
    clock: FakeClock
    tenant: SimulatedTenant
    standin: SlackStandIn
    budget: RateBudget
    client: AlertSource
    service: AlertService
    store: WatchStore
    watches: SlackWatches
    publisher: Publisher  # what the poller posts through: `watches`, or the `publisher` wrapper around it
    poller: Poller
    api: str = "mde"
    ahead: timedelta = timedelta(0)

    @classmethod
    def build(
        cls,
        path: Path,
        *,
        clock: FakeClock | None = None,
        tenant: SimulatedTenant | None = None,
        standin: SlackStandIn | None = None,
        budget: RateBudget | None = None,
        holder: str = "process-1",
        publisher: Callable[[Publisher], Publisher] | None = None,
        api: str = "mde",
        ahead: timedelta = timedelta(0),
        store: WatchStore | None = None,
    ) -> Rig:
        clock = clock or FakeClock()
        bot_now = (lambda: clock.wall() + ahead) if ahead else clock.wall
        tenant = tenant or SimulatedTenant(now=clock.wall, clock=clock)
        standin = standin or SlackStandIn()
        budget = budget or RateBudget(clock=clock)
        client: AlertSource
        if api == "graph":
            client = graph_source(tenant, gate=budget, clock=clock, now=bot_now)
        else:
            client = DefenderClient(
                SIMULATOR_BASE_URL,
                StaticTokenProvider("t"),
                gate=budget,
                transport=SimulatorTransport(tenant),
                clock=clock,
                sleep=clock.sleep,
            )
        service = AlertService(client, clock=clock, now=bot_now)
        store = store or SqliteWatchStore(path)  # another store (Redis) in place of the file, when given
        poster = Poster(web_client(standin.bot_token, standin.api_url))
        watches = SlackWatches(
            store, service, poster, lambda: CardContext(PORTAL, AAD_TENANT_ID, seal=TEST_SEAL), now=bot_now
        )
        wrapped: Publisher = publisher(watches) if publisher is not None else watches
        poller = Poller(store, service, client, wrapped, interval=INTERVAL, clock=clock, now=bot_now, holder=holder)
        watches.poller = poller
        return cls(path, clock, tenant, standin, budget, client, service, store, watches, wrapped, poller, api, ahead)

    def restart(self, holder: str = "process-2", *, publisher: Callable[[Publisher], Publisher] | None = None) -> Rig:
        """A new process on the same database file, Slack and Defender (the old one is abandoned, not stopped)."""
        return Rig.build(
            self.path,
            clock=self.clock,
            tenant=self.tenant,
            standin=self.standin,
            holder=holder,
            publisher=publisher,
            api=self.api,
            ahead=self.ahead,
        )

    def close(self) -> None:
        self.store.close()
        self.client.close()

    # Acting ----------------------------------------------------------------------------------------------------

    def watch(self, text: str = "ws-fin-014", hours: float = 2) -> Watch:
        query = parse_query(text)
        self.watches.start(CHANNEL, "U0ALICE", query, timedelta(hours=hours))
        watch = self.store.live_watches(CHANNEL)[-1]
        assert watch.root_ts is not None
        return watch

    def check(self, seconds: float = INTERVAL) -> CycleReport:
        self.clock.advance(seconds)
        return self.poller.run_once()

    def mid(self, hostname: str = FIN_014) -> str:
        return machine_id(self.tenant, hostname)

    def add_alert(self, hostname: str = FIN_014, **fields: Any) -> str:
        fields.setdefault("title", "Suspicious PowerShell command line")
        fields.setdefault("severity", "High")
        return str(self.tenant.add_alert(self.mid(hostname), **fields)["id"])

    # Looking ---------------------------------------------------------------------------------------------------

    def followups(self) -> list[Posted]:
        """Threaded replies the poller posted (they carry a reference in their metadata)."""
        return [p for p in self.standin.posts if p.via == "chat.postMessage" and reference(p) is not None]

    def followup_counts(self) -> Counter[str]:
        return Counter(str(reference(p)) for p in self.followups())

    def root_updates(self, watch: Watch) -> list[Posted]:
        return [p for p in self.standin.posts if p.via == "chat.update" and p.payload.get("ts") == watch.root_ts]

    @property
    def graph(self) -> bool:
        return self.api == "graph"

    def alert_calls(self) -> int:
        """Every alert-list request: a device's alerts and the delta (MDE), alerts_v2 (Graph, where lookups and
        the poller share the mirror's reads)."""
        kinds = ("graph-alerts",) if self.graph else ("machine-alerts", "alerts")
        return sum(kind_of(path) in kinds for _, path in self.tenant.request_log)

    def delta_calls(self) -> int:
        """The poller's delta reads: `/api/alerts` (MDE), or the alerts_v2 reads after the mirror's first one, its
        backfill (Graph, where a lookup between two checks would read too: these tests make none)."""
        if self.graph:
            return max(0, self.alert_calls() - 1)
        return sum(kind_of(path) == "alerts" for _, path in self.tenant.request_log)
