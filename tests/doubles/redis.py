"""Tests of the Redis backend run against a real server: `REDIS_URL`, default `redis://127.0.0.1:6379/15`.

Each test works under its own key prefix and deletes only its own keys afterwards, so tests never touch
data of other tests or other databases. When the server cannot be reached the tests are skipped with the
reason, except in CI (`CI` set), where that is a failure: `.ci/run` starts a `redis-server` when needed.

`RedisProcess` is what one bot process holds on shared state, built in the test's own process: several of them on
one key prefix stand for several processes (each with its own connection pool, process-local caches and client),
sharing only what Redis holds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from bot.alerts.service import AlertService
from bot.defender.auth import StaticTokenProvider
from bot.defender.client import DefenderClient
from bot.defender.simulator import SIMULATOR_BASE_URL, SimulatedTenant, SimulatorTransport
from bot.state.redis.budget import RedisRateBudget
from bot.state.redis.cache import RedisSharedCache
from bot.state.redis.connection import RedisConnection
from bot.state.urls import parse_redis_url

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def require_redis() -> None:
    """Skip (or, in CI, fail) when the test Redis is not reachable."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        shown = parse_redis_url(REDIS_URL).shown
        message = f"no Redis at {shown} ({type(exc).__name__}); set REDIS_URL or start redis-server"
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the Redis backend's tests to run: {message}")
        pytest.skip(message)
    finally:
        client.close()


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def url_with_prefix(prefix: str) -> str:
    separator = "&" if "?" in REDIS_URL else "?"
    return f"{REDIS_URL}{separator}prefix={prefix}"


def delete_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@contextlib.contextmanager
def shared_state(prefix: str | None = None) -> Iterator[RedisConnection]:
    """A `RedisConnection` on the test Redis under a fresh prefix; its keys are deleted afterwards."""
    require_redis()
    prefix = prefix or unique_prefix()
    state = RedisConnection(url_with_prefix(prefix))
    try:
        yield state
    finally:
        state.close()
        delete_prefix(prefix)


class RedisProcess:
    """One bot process's Defender side on shared state at `url`: its own client, budget and caches.

    `clock` is what its connection's back-off after a Redis failure counts in (a test moves it on rather than
    waiting the back-off out).
    """

    def __init__(
        self,
        url: str,
        tenant: SimulatedTenant,
        *,
        per_minute: int = 100,
        processes: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shared = RedisConnection(url, clock=clock)
        self.budget = RedisRateBudget(self.shared, per_minute, 1500, processes=processes)
        self.client = DefenderClient(
            SIMULATOR_BASE_URL, StaticTokenProvider("t"), gate=self.budget, transport=SimulatorTransport(tenant)
        )
        self.cache = RedisSharedCache(self.shared, alerts_ttl=900)
        self.service = self._service()

    def _service(self) -> AlertService:
        return AlertService(self.client, ttl=60, max_stale=900, shared=self.cache)

    def forget_local(self) -> None:
        """Drop what this process cached on its own (as a restart would); what Redis holds stays."""
        self.service = self._service()

    def close(self) -> None:
        self.client.close()
        self.shared.close()


@contextlib.contextmanager
def private_redis(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of this test's own on `port` (no persistence), stopped afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        require_redis()  # fails in CI when there is no Redis at all; otherwise the reason is the binary
        pytest.skip("needs the redis-server binary to stop and restart a server")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)
