"""Benchmark: what a slow or stalled dependency costs, in seconds a person or a process feels.

Run: `.venv/bin/python -m bench.slow_dependencies` (`--quick`: the same, smaller). Two measurements:

- *Redis stall*: a `redis-server` of its own (no persistence) is paused with SIGSTOP for 2 s while 8 threads
  of one process use it; the figure is how long the process then runs on process-local state (from the first
  failed call until Redis is marked available again).
- *User groups*: the Slack stand-in answers `usergroups.users.list` 1.2 s late, the access policy names three
  groups (the person is in the last one by id), and the bot has not read them yet (a fresh start); the figure is
  how long the slash command's acknowledgement took (Slack gives up at 3 s).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence

from slack_bolt.request import BoltRequest

from bot.config import SlackMode, load_settings, load_slack_settings
from bot.demo.slack_requests import SlackRequests
from bot.demo.standin import SlackStandIn
from bot.runtime import build_runtime, build_slack_bot
from bot.state.redis.connection import RedisConnection, RedisUnavailable

STALL = 2.0
SLACK_LATENCY = 1.2
GROUPS = ("S0SOC", "S0IR", "S0NOC")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_stall(threads: int = 8) -> float:
    """Seconds on local state after a `STALL`-second pause of Redis under `threads` busy threads."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("needs the redis-server binary")
    port = _free_port()
    server = subprocess.Popen(  # noqa: S603 - the redis-server found on PATH, fixed arguments
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    shared = RedisConnection(f"redis://127.0.0.1:{port}/0")
    try:
        while not shared.ping():
            time.sleep(0.05)
        stop = threading.Event()
        first_failure: list[float] = []

        def busy() -> None:
            while not stop.is_set():
                try:
                    shared.run(lambda r: r.ping())
                except RedisUnavailable:
                    first_failure.append(time.monotonic())
                time.sleep(0.02)

        workers = [threading.Thread(target=busy) for _ in range(threads)]
        for worker in workers:
            worker.start()
        time.sleep(0.2)
        server.send_signal(signal.SIGSTOP)
        time.sleep(STALL)
        server.send_signal(signal.SIGCONT)
        while not (first_failure and shared.available):
            time.sleep(0.01)
        on_local_state = time.monotonic() - first_failure[0]
        stop.set()
        for worker in workers:
            worker.join()
        return on_local_state
    finally:
        shared.close()
        server.terminate()
        server.wait()


def usergroups_ack() -> float:
    """Seconds to acknowledge a slash command while three unread user groups take `SLACK_LATENCY` each."""
    standin = SlackStandIn()
    standin.usergroups.update({group: set() for group in GROUPS} | {"S0SOC": {"U0ALICE"}})  # the last one read
    standin.slow("usergroups.users.list", SLACK_LATENCY)
    secret = "bench-signing-secret"  # noqa: S105 - the stand-in's own
    env = {"SLACK_BOT_TOKEN": standin.bot_token, "SLACK_SIGNING_SECRET": secret, "SLACK_API_URL": standin.api_url,
           "BOT_ALLOWED_USERGROUPS": ",".join(GROUPS), "BOT_AUDIT_LOG": "off"}  # fmt: skip
    settings = load_settings({"BOT_STATE_URL": "sqlite:///:memory:", "DEFENDER_BACKEND": "simulator"})
    bot = build_slack_bot(build_runtime(settings), load_slack_settings(SlackMode.HTTP, env))
    try:
        body, headers = SlackRequests(secret).command("ws-fin-014", response_url=standin.response_url("r1"))
        started = time.monotonic()
        bot.app.dispatch(BoltRequest(body=body.decode(), headers=headers))
        acknowledged = time.monotonic() - started
        standin.wait_for_posts(1)  # the answer, before the stand-in goes
        return acknowledged
    finally:
        bot.close()
        standin.close()


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the CI smoke size (4 threads)")
    args = parser.parse_args(argv)
    figures = {
        "redis_local_state_seconds": redis_stall(4 if args.quick else 8),
        "usergroups_ack_seconds": usergroups_ack(),
    }
    print(f"Redis paused {STALL:.0f} s: {figures['redis_local_state_seconds']:.1f} s on process-local state")
    print(f"3 user groups at {SLACK_LATENCY} s each, not read yet: ack in {figures['usergroups_ack_seconds']:.2f} s")
    return figures


if __name__ == "__main__":
    main()
