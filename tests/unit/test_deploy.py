"""The deployment files: the Dockerfile (linted here; built for real where a container engine runs), .dockerignore,
compose.yaml (bot + Redis) and the systemd unit.

No container engine runs in most test environments, so the lint checks what matters without one: two stages, a
pinned base image, a non-root `USER` before `CMD`, a health check on /healthz with Python's standard library,
no secret in the image. `test_the_image_builds` builds it with `docker build` when `docker info` answers.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
UNIT = ROOT / "deploy" / "device-alerts.service"
SECRET_NAMES = re.compile(r"(TOKEN|SECRET|PASSWORD|CLIENT_ID|TENANT_ID|REDIS_URL)", re.I)


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), comments dropped and continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def of(keyword: str) -> list[str]:
    return [rest for kw, rest in instructions() if kw == keyword]


# -- Dockerfile --------------------------------------------------------------------------------------------------


def test_the_dockerfile_has_a_build_stage_and_a_pinned_base() -> None:
    bases = of("FROM")
    assert len(bases) >= 2, "multi-stage: a build stage and a smaller run stage"
    for base in bases:
        image = base.split()[0]
        assert re.fullmatch(r"python:3\.1[1-9](\.\d+)?-slim-\w+(@sha256:[0-9a-f]{64})?", image), image
    assert any("COPY --from=" in f"COPY {rest}" for rest in of("COPY")), "the run stage copies from the build stage"


def test_the_project_is_installed_with_pip_not_editable() -> None:
    runs = " ".join(of("RUN"))
    assert re.search(r"pip install (--\S+ )*\.(\s|$)", runs), runs
    assert "-e ." not in runs and "--editable" not in runs


def test_the_bot_runs_as_a_non_root_user_in_http_mode() -> None:
    order = [keyword for keyword, _ in instructions()]
    last_from = len(order) - 1 - order[::-1].index("FROM")
    users = [n for n, keyword in enumerate(order) if keyword == "USER" and n > last_from]
    assert users, "the run stage sets USER"
    user = instructions()[users[-1]][1].split(":")[0]
    assert user not in ("root", "0"), user
    assert users[-1] < order.index("CMD")
    assert of("CMD") == ['["python", "-m", "bot", "http"]']
    assert of("EXPOSE") == ["3000"]


def test_the_health_check_asks_healthz_with_the_standard_library() -> None:
    [check] = of("HEALTHCHECK")
    assert "/healthz" in check
    assert "urllib.request" in check
    assert not re.search(r"\b(curl|wget)\b", check), "the slim image has neither"


def test_no_secret_is_baked_into_the_image() -> None:
    for keyword in ("ENV", "ARG", "LABEL"):
        for rest in of(keyword):
            assert not SECRET_NAMES.search(rest), f"{keyword} {rest}"
    copied = " ".join(of("COPY") + of("ADD"))
    assert ".env" not in copied
    assert not re.search(r"COPY \. ", " ".join(f"COPY {c}" for c in of("COPY"))), "copy named paths, not the tree"


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".env.*", ".venv", ".git", "*.db"} <= ignored


# -- compose.yaml ------------------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_compose_runs_the_bot_with_redis() -> None:
    services = compose()["services"]
    assert set(services) == {"bot", "redis"}
    bot, redis = services["bot"], services["redis"]
    assert bot["build"] == "."
    assert bot["env_file"] == ".env"
    assert bot["environment"]["BOT_STATE_URL"] == "redis://redis:6379/0"
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
    assert bot["command"] == ["python", "-m", "bot", "http"]
    # Published on loopback only: a TLS reverse proxy is what the world reaches.
    assert all(str(port).startswith("127.0.0.1:") for port in bot["ports"])
    assert re.fullmatch(r"redis:\d+\.\d+(\.\d+)?-alpine", redis["image"]), "a pinned Redis"
    assert "noeviction" in redis["command"], "never evict a watch"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert "redis-data" in compose()["volumes"]


def test_compose_services_have_health_checks_and_restart() -> None:
    for name, service in compose()["services"].items():
        assert service["restart"] == "unless-stopped", name
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD", name
    assert "/healthz" in " ".join(compose()["services"]["bot"]["healthcheck"]["test"])
    assert compose()["services"]["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]


def test_compose_holds_no_secret_value() -> None:
    for name, service in compose()["services"].items():
        for key in service.get("environment", {}):
            assert not SECRET_NAMES.search(key), f"{name}: {key} belongs in .env"


# -- the systemd unit ----------------------------------------------------------------------------------------------


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def test_the_unit_runs_the_console_script_as_a_non_root_user() -> None:
    service = unit()["Service"]
    assert service["User"] not in ("root", "0")
    assert service["ExecStart"].split()[0].endswith("/device-alerts")
    assert service["ExecStart"].split()[1] in ("http", "socket")
    assert service["EnvironmentFile"].startswith("/etc/")
    assert service["Restart"] in ("on-failure", "always")
    assert service["RestartPreventExitStatus"] == "2", "a configuration error is not fixed by restarting"


def test_the_unit_is_hardened_and_keeps_its_state_in_a_state_directory() -> None:
    service = unit()["Service"]
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ProtectHome"] == "yes"
    assert service["PrivateTmp"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    assert service["StateDirectory"] == "device-alerts"
    text = UNIT.read_text(encoding="utf-8")
    assert "BOT_STATE_URL=sqlite:////var/lib/device-alerts/" in text, "the SQLite file in the state directory"
    assert "BOT_HTTP_HOST=127.0.0.1" in text, "behind a reverse proxy on the same host"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_parses_the_unit() -> None:
    result = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True, timeout=60)
    # The user, the virtual environment and the env file exist only where it is installed; anything else is a bug.
    problems = [
        line
        for line in result.stderr.splitlines()
        if line.strip()
        and not re.search(r"(/opt/device-alerts|/etc/device-alerts|device-alerts\.service: Failed|User|Group)", line)
    ]
    assert problems == [], result.stderr


# -- the image, for real -------------------------------------------------------------------------------------------


def _engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker info failed: {exc}"
    return None if info.returncode == 0 else "no container engine answers `docker info`"


@pytest.mark.timeout(900)
def test_the_image_builds() -> None:
    problem = _engine_problem()
    if problem is not None:
        pytest.skip(f"{problem}: the Dockerfile is linted above instead")
    tag = "device-alerts:test"
    built = subprocess.run(["docker", "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    inspected = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Config.User}}", tag], capture_output=True, text=True
    )
    assert inspected.stdout.strip() not in ("", "root", "0")
    ran = subprocess.run(
        ["docker", "run", "--rm", tag, "python", "-m", "bot", "alerts", "ws-fin-014"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("ws-fin-014.contoso.local: ")
