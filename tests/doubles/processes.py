"""Bot processes for the system tests: start them, wait for them, read what they logged, stop them; and crashes.

`BotProcesses(directory)` starts each process in `directory` (no `.env` there) with only the environment a test
gives it, its stderr in a file the test can read; `stop()` ends every one still running. `send_burst` sends
signed Slack requests at once and does something (a signal) mid-burst. A `Crash` is a process dying at one step
inside a test's own process: a `BaseException`, so no `except Exception` in the bot can swallow it, as nothing
survives a real kill.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest


class Crash(BaseException):
    """The process dies here (nothing in the bot may catch it, as nothing survives a real kill)."""


def free_port() -> int:
    """A loopback port nothing listens on: for a process to serve on, or for a client to be refused at."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bot_command(*args: str) -> list[str]:
    """`python -m bot …` with this interpreter."""
    return [sys.executable, "-m", "bot", *args]


def stop_processes(processes: Iterable[subprocess.Popen[bytes]]) -> None:
    """Ask each still-running process to stop (SIGTERM), then kill any that has not within 5 s."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@dataclass
class BotProcess:
    popen: subprocess.Popen[bytes]
    stderr_path: Path
    port: int | None = None  # where it serves HTTP, when it does

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def healthy(self) -> bool:
        """Whether `/healthz` answers 200; fails the test if the process has exited."""
        if self.popen.poll() is not None:
            pytest.fail(f"exited with {self.popen.returncode}:\n{self.stderr}")
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
        return False


class BotProcesses:
    """Starts processes in `directory` with only the environment given; `stop()` ends them all."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[BotProcess] = []
        self._files: list[IO[bytes]] = []

    def start(self, command: Sequence[str], env: Mapping[str, str], *, port: int | None = None) -> BotProcess:
        stderr_path = self.directory / f"stderr-{len(self.started)}.txt"
        stderr = stderr_path.open("wb")
        self._files.append(stderr)
        base = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.directory), "PYTHONUNBUFFERED": "1"}
        popen = subprocess.Popen(
            list(command),
            cwd=self.directory,
            env={**base, **env, **({"PORT": str(port)} if port is not None else {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        process = BotProcess(popen, stderr_path, port)
        self.started.append(process)
        return process

    def stop(self) -> None:
        stop_processes(process.popen for process in self.started)
        for file in self._files:
            file.close()


def wait_until(condition: Callable[[], bool], timeout: float, what: str, processes: Sequence[BotProcess]) -> None:
    """Poll `condition`; fail, with the processes' stderr, when `timeout` passes or when one of them that was
    running at the start exits first (one a test killed on purpose before waiting does not count)."""
    deadline = time.monotonic() + timeout
    running = [p for p in processes if p.popen.poll() is None]
    while not condition():
        exited = [p for p in running if p.popen.poll() is not None]
        if exited or time.monotonic() > deadline:
            why = f"exited with {exited[0].popen.returncode}" if exited else f"timed out after {timeout} s"
            logs = "\n".join(f"--- process {n}:\n{p.stderr[-3000:]}" for n, p in enumerate(processes))
            pytest.fail(f"{why} waiting for {what}\n{logs}")
        time.sleep(0.05)


@dataclass
class Burst:
    """What a burst of requests got: each request's acknowledgement (its JSON body) by index, or nothing."""

    acks: dict[int, dict[str, Any]] = field(default_factory=dict)
    unanswered: set[int] = field(default_factory=set)  # the connection failed, or no 200 came back
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acked_with(self, text: str) -> set[int]:
        """The requests acknowledged with exactly `text` ("Looking up …")."""
        with self.lock:
            return {index for index, ack in self.acks.items() if ack.get("text") == text}


def send_burst(
    process: BotProcess,
    requests: Sequence[tuple[bytes, dict[str, str]]],
    *,
    mid_burst: Callable[[], None],
    after_acks: int,
) -> Burst:
    """Send every request at once, each on its own connection; once `after_acks` are acknowledged (or 10 s
    passed), call `mid_burst` (a signal), and wait for every request to end either way."""
    burst = Burst()
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    with httpx.Client(timeout=10.0, limits=limits) as client:

        def fire(index: int) -> None:
            body, headers = requests[index]
            try:
                response = client.post(f"{process.url}/slack/events", content=body, headers=headers)
                # An event's acknowledgement is a 200 with an empty body; a command's carries its note.
                ack = (response.json() if response.content else {}) if response.status_code == 200 else None
            except (httpx.TransportError, ValueError):
                ack = None
            with burst.lock:
                if ack is None:
                    burst.unanswered.add(index)
                else:
                    burst.acks[index] = ack

        with ThreadPoolExecutor(max_workers=len(requests)) as senders:
            futures = [senders.submit(fire, index) for index in range(len(requests))]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with burst.lock:
                    if len(burst.acks) >= after_acks:
                        break
                time.sleep(0.001)
            mid_burst()
            for future in futures:
                future.result()
    return burst
