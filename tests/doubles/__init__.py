"""Test doubles and helpers shared by several test modules: the one place test modules import from each other.

- `secrets`: the fake secrets every test hands the bot (and the hygiene check looks for);
- `slack`: a bot wired to a `SlackStandIn` and the simulator (`harness`), and how to read what it posted;
- `cards`: data to render, how to read a rendered card, and the escaping checker;
- `defender`: the simulator behind a real socket with switchable faults (`DefenderServer`), and machine ids;
- `oidc`: an HTTPS double of Entra ID's discovery and token endpoints;
- `redis`: the test Redis (skipped without it, except in CI), and one process's state on it (`RedisProcess`);
- `watch`: one process's watch machinery built by hand (`Rig`);
- `processes`, `bot_process`: bot processes for the system tests, and crashes; `concurrency`, `logs`: threads
  started at once, and a handler that keeps ERROR records.

The manual clock the benchmarks share is `bot.demo.clock.FakeClock`.
"""
