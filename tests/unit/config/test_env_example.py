""".env.example is the table of variables written out (`python -m bot.config.docs --env`), and stays a template.

The rule: the committed file is exactly what the renderer writes; every variable is in it once, commented out
(copying it to .env changes nothing until a line is uncommented); what a first Socket Mode run needs comes first;
git ignores `.env` and not `.env.example`.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from dotenv import dotenv_values

from bot.config.docs import FIRST_RUN, env_example
from bot.config.variables import VARIABLES

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / ".env.example"


def test_the_committed_env_example_is_the_rendered_one() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") == env_example(), (
        "regenerate it: .venv/bin/python -m bot.config.docs --env > .env.example"
    )


def test_every_variable_is_there_once_and_commented_out() -> None:
    names = re.findall(r"^# ([A-Z][A-Z0-9_]+)=", env_example(), flags=re.M)
    assert sorted(names) == sorted(variable.name for variable in VARIABLES)
    assert dotenv_values(EXAMPLE) == {}  # copied to .env as it is, it sets nothing


def test_a_first_socket_mode_run_needs_only_the_first_lines() -> None:
    names = re.findall(r"^# ([A-Z][A-Z0-9_]+)=", env_example(), flags=re.M)
    assert names[: len(FIRST_RUN)] == [variable.name for variable in FIRST_RUN]
    assert {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "DEFENDER_TENANT_ID", "DEFENDER_CLIENT_ID"} <= set(names[:6])


def test_no_default_in_it_is_a_secret_and_no_line_is_too_long() -> None:
    for line in env_example().splitlines():
        assert len(line) <= 120, line
        assert not re.match(r"^# (SLACK_\w*TOKEN|\w*SECRET\w*)=.", line), line


def test_git_ignores_dot_env_and_not_the_example() -> None:
    patterns = [line.strip() for line in (ROOT / ".gitignore").read_text().splitlines() if line.strip()]
    patterns = [p for p in patterns if not p.startswith("#")]
    assert ".env" in patterns
    assert not any(fnmatch.fnmatch(".env.example", p.lstrip("/")) for p in patterns if not p.startswith("!"))
