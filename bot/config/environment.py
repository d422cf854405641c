"""The one place that reads the process environment and the `.env` file; everything else gets the merged mapping."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values


def read_environment(
    env: Mapping[str, str] | None = None, *, dotenv_path: str | Path | None = ".env"
) -> dict[str, str]:
    """The process environment (or `env`) over the `.env` file's values: a real environment variable wins."""
    merged: dict[str, str] = {}
    if dotenv_path is not None and Path(dotenv_path).is_file():
        merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    merged.update(os.environ if env is None else env)
    return merged
