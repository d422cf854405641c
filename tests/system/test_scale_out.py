"""Three bot processes on one Redis: one Defender call per device, one budget, one poller, one reply per event.

The processes run the code of `python -m bot http` (through `tests.doubles.bot_process`). They share
`BOT_STATE_URL=redis://…` (a key prefix of this test's own on `REDIS_URL`), one Defender (the simulator, served
over HTTP on 127.0.0.1 by this test, which logs every request with its time; passed as `--defender-url`) and
one Slack (a `SlackStandIn`). Time is compressed: the poll interval is 5 s (`--poll-seconds`, below the
production minimum of 10 s) and the budget is 15 calls per minute per API, so the storm cannot be served in
full and the budget has to hold across processes.

The figures printed here are the ones in docs/scaling.md.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
import redis

from bot.defender.simulator import BUSY_HOSTNAME, SimulatedTenant
from bot.demo.slack_requests import SlackRequests
from bot.demo.standin import Posted, SlackStandIn
from tests.doubles import bot_process
from tests.doubles.defender import DefenderServer
from tests.doubles.processes import BotProcess, BotProcesses, free_port, wait_until
from tests.doubles.redis import REDIS_URL, delete_prefix, require_redis, unique_prefix, url_with_prefix
from tests.doubles.slack import SIGNING_SECRET, close_soon, reference, text_of

PROCESSES = 3
DEVICES = 20
COMMANDS = 300
PER_MINUTE = 15
INTERVAL = 5.0
CHANNEL = "C0INCIDENT"


def busiest_minute(times: list[float]) -> int:
    """The most requests in any 60 s window."""
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while times[start] <= moment - 60:
            start += 1
        best = max(best, end - start + 1)
    return best


@dataclass
class Cluster:
    bots: list[BotProcess]
    defender: DefenderServer
    standin: SlackStandIn
    prefix: str
    requests: SlackRequests
    client: httpx.Client

    def post(self, bot: BotProcess, request: tuple[bytes, dict[str, str]]) -> httpx.Response:
        body, headers = request
        return self.client.post(f"{bot.url}/slack/events", content=body, headers=headers)

    def lease_holder_pid(self) -> int | None:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            holder = client.hget(f"{self.prefix}:lease", "holder")
        finally:
            client.close()
        return int(holder.decode().split("-")[0]) if holder else None

    def followups(self) -> list[Posted]:
        """Threaded follow-ups: their metadata reference is `<watch>:<check>` (a root card's starts with `root`)."""
        return [
            p
            for p in self.standin.posts
            if p.via == "chat.postMessage" and (reference(p) or "root").split(":")[0].isdigit()
        ]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_redis()
    tmp = tmp_path_factory.mktemp("scale-out")
    prefix = unique_prefix()
    tenant = SimulatedTenant()
    defender = DefenderServer(tenant, keep_alive=True)
    standin = SlackStandIn()
    processes = BotProcesses(tmp)
    try:
        env = {
            "PYTHONPATH": str(bot_process.ROOT),
            "SLACK_BOT_TOKEN": standin.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": standin.api_url,
            "BOT_STATE_URL": url_with_prefix(prefix),
            "BOT_PROCESSES": str(PROCESSES),
            "DEFENDER_BACKEND": "simulator",
            "DEFENDER_CALLS_PER_MINUTE": str(PER_MINUTE),
            "DEFENDER_BACKGROUND_MINUTE_SHARE": "1.0",  # the poller's 12 calls a minute fit
            "BOT_USER_RATE_PER_MINUTE": "0",  # the storm comes from one test user
            "BOT_CHANNEL_RATE_PER_MINUTE": "0",
            "BOT_WORKERS": "16",
            "BOT_MAX_PENDING": "300",
            "BOT_AUDIT_LOG": "off",
            "LOG_LEVEL": "info",
        }
        command = bot_process.command("http", defender_url=defender.base_url, poll_seconds=INTERVAL)
        bots = [processes.start(command, env, port=free_port()) for _ in range(PROCESSES)]
        wait_until(lambda: all(b.healthy() for b in bots), 30, "three healthy bots", bots)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        with httpx.Client(timeout=10.0, limits=limits) as client:
            yield Cluster(bots, defender, standin, prefix, SlackRequests(SIGNING_SECRET), client)
    finally:
        processes.stop()
        defender.close()
        close_soon(standin)
        delete_prefix(prefix)


def _devices(tenant: SimulatedTenant) -> list[str]:
    """Twenty machine ids (every record but the 500-alert device, whose list takes three pages)."""
    ids = [str(m["id"]) for m in tenant.machines if m["computerDnsName"] != BUSY_HOSTNAME]
    assert len(ids) == DEVICES
    return ids


# -- the tests (in order: they share the three processes) ---------------------------------------------------------


def test_a_storm_of_300_commands_on_three_processes(cluster: Cluster) -> None:
    devices = _devices(cluster.defender.tenant)
    health = httpx.get(f"{cluster.bots[0].url}/healthz", timeout=5).json()
    assert health["shared_state"] == "redis"
    requests = [
        (
            cluster.bots[n % PROCESSES],
            cluster.requests.command(devices[n % DEVICES], response_url=cluster.standin.response_url(f"storm-{n}")),
        )
        for n in range(COMMANDS)
    ]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=30) as senders:
        acks = list(senders.map(lambda r: cluster.post(*r), requests))
    acked = time.monotonic() - started
    assert [a.status_code for a in acks] == [200] * COMMANDS

    def answers() -> list[Posted]:
        return [p for p in cluster.standin.posts if p.via == "response_url" and p.target.startswith("storm-")]

    wait_until(lambda: len(answers()) >= COMMANDS, 45, f"{COMMANDS} answers", cluster.bots)
    answered = time.monotonic() - started
    by_device: dict[str, Counter[str]] = {}
    for posted in answers():
        n = int(posted.target.removeprefix("storm-"))
        kind = "card" if (posted.payload.get("blocks") or [{}])[0].get("type") == "header" else "notice"
        by_device.setdefault(devices[n % DEVICES], Counter())[kind] += 1

    log = cluster.defender.log
    alert_calls = Counter(p.split("?")[0] for _, p in log.of("machine-alerts"))
    detail_calls = Counter(p.split("?")[0] for _, p in log.of("machine"))
    cards = sum(c["card"] for c in by_device.values())
    print(
        f"\nstorm: {COMMANDS} commands for {DEVICES} devices over {PROCESSES} processes, acked in {acked:.1f} s, "
        f"all answered in {answered:.1f} s; {cards} cards, {COMMANDS - cards} 'budget used up' notices; "
        f"Defender requests: {sum(alert_calls.values())} alert lists, {sum(detail_calls.values())} device details "
        f"(budget {PER_MINUTE}/min per API; busiest minute: {busiest_minute([t for t, _ in log.of('machine-alerts')])}"
        f" alert lists, {busiest_minute([t for t, _ in log.of('machine')])} details)"
    )
    # One call per device at most, cluster-wide; never more than the budget in any minute.
    assert sum(alert_calls.values()) <= DEVICES
    assert max(alert_calls.values()) == 1
    assert max(detail_calls.values()) == 1
    for kind in ("machine-alerts", "machine", "machines", "alerts"):
        assert busiest_minute([t for t, _ in log.of(kind)]) <= PER_MINUTE
    # The budget was the limit (20 devices, 15 calls): it held across the three processes, and Defender
    # itself never had to throttle.
    assert sum(alert_calls.values()) == PER_MINUTE
    assert sum(1 for _, p in log.requests) == cluster.defender.tenant.calls
    assert all(c["card"] == 0 or c["notice"] == 0 for c in by_device.values())  # a device got one answer kind
    assert sum(1 for c in by_device.values() if c["card"]) == PER_MINUTE


def test_a_retried_event_on_another_process_is_answered_once(cluster: Cluster) -> None:
    devices = _devices(cluster.defender.tenant)
    answered = next(d for d in devices if any(d in p for _, p in cluster.defender.log.of("machine-alerts")))
    event = {"type": "app_mention", "user": "U0ALICE", "text": f"<@U0DEVALERTS> {answered}", "channel": "C0SCALE",
             "ts": "1700000000.000900"}  # fmt: skip
    first = cluster.post(cluster.bots[0], cluster.requests.event(event, event_id="Ev0SCALE01"))
    assert first.status_code == 200

    def replies() -> list[Posted]:
        return [p for p in cluster.standin.posts if p.target == "C0SCALE"]

    wait_until(lambda: len(replies()) >= 1, 10, "the reply to the mention", cluster.bots)
    retry = cluster.post(cluster.bots[2], cluster.requests.event(event, event_id="Ev0SCALE01", retry_num=1))
    assert retry.status_code == 200
    time.sleep(1.5)
    assert len(replies()) == 1


def test_one_watch_three_pollers_each_change_posted_once_and_a_killed_holder_is_replaced(cluster: Cluster) -> None:
    tenant = cluster.defender.tenant
    devices = _devices(tenant)
    watched = next(d for d in devices if any(d in p for _, p in cluster.defender.log.of("machine-alerts")))
    started = cluster.post(
        cluster.bots[1], cluster.requests.command(f"watch {watched}", response_url=cluster.standin.response_url("w1"))
    )
    assert started.status_code == 200
    client = redis.Redis.from_url(REDIS_URL)
    try:

        def checked() -> bool:
            ids = client.zrange(f"{cluster.prefix}:watches:live", 0, -1)
            return bool(ids) and client.hget(f"{cluster.prefix}:watch:{ids[0].decode()}", "last_checked_at") is not None

        wait_until(checked, 3 * INTERVAL, "the watch's first check", cluster.bots)
    finally:
        client.close()

    def posted(title: str) -> list[Posted]:
        return [p for p in cluster.followups() if title in text_of(p)]

    tenant.add_alert(watched, title="Scale-out change one", severity="High")
    added = time.monotonic()
    wait_until(lambda: bool(posted("Scale-out change one")), 3 * INTERVAL, "the first follow-up", cluster.bots)
    first_latency = time.monotonic() - added
    time.sleep(2 * INTERVAL)  # three pollers, two more intervals: still one post
    assert len(posted("Scale-out change one")) == 1

    holder = cluster.lease_holder_pid()
    victim = next(b for b in cluster.bots if b.popen.pid == holder)
    victim.popen.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    victim.popen.wait(timeout=5)
    tenant.add_alert(watched, title="Scale-out change two", severity="Medium")
    wait_until(lambda: bool(posted("Scale-out change two")), 4 * INTERVAL, "a follow-up after the kill", cluster.bots)
    takeover = time.monotonic() - killed
    new_holder = cluster.lease_holder_pid()
    time.sleep(INTERVAL)
    refs = Counter(reference(p) for p in cluster.followups())
    print(
        f"\nwatch: first change posted {first_latency:.1f} s after it happened (interval {INTERVAL:.0f} s), once; "
        f"lease holder (pid {holder}) killed: next change posted by pid {new_holder} {takeover:.1f} s later; "
        f"follow-ups {sum(refs.values())}, each posted once: {max(refs.values()) == 1}"
    )
    assert new_holder is not None and new_holder != holder
    assert takeover <= 2 * INTERVAL + 1.0  # within two intervals (plus the check and the post)
    assert len(posted("Scale-out change two")) == 1
    assert max(refs.values()) == 1
    # Background polling stayed within the budget too.
    assert busiest_minute([t for t, _ in cluster.defender.log.of("alerts")]) <= PER_MINUTE
