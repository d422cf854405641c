"""The connection to Redis (`RedisConnection`): logged without its password."""

from __future__ import annotations

import logging

import pytest

from bot.state.redis.connection import RedisConnection
from tests.doubles.processes import free_port


def test_state_is_logged_without_its_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    state = RedisConnection(f"redis://:hunter2-pw@127.0.0.1:{free_port()}/0")
    try:
        assert state.ping() is False
    finally:
        state.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "redis://:***@127.0.0.1" in text
    assert "hunter2" not in text
