"""docker-compose.yml and the Dockerfile stay in step with the code they run.

Checked without a Docker engine: the compose file's structure, that every container's
command is one the `mbs` CLI understands and can load, that `docker-compose config`
accepts the file, and that the image installs every package pyproject declares.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mbs.cli import app as cli_app
from mbs.runner import load_unit, unit_names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
KAFKA_IMAGE = "apache/kafka:3.9.1"
BOOTSTRAP = "kafka:9092"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result = compose.get("services")
    assert isinstance(result, dict), "docker-compose.yml has no services mapping"
    assert result, "docker-compose.yml has no services"
    return result


def _built(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services.items() if "build" in svc}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, whichever form the file uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): str(value) for key, value in env.items()}


def _unit_of(command: list[str]) -> str | None:
    return command[2] if command[:2] == ["run", "unit"] and len(command) == 3 else None


def test_compose_runs_kafka_the_gateway_and_every_unit(
    services: dict[str, dict[str, Any]],
) -> None:
    names = unit_names()
    assert names, "no unit packages found under services/"
    missing = {"kafka", "gateway", *names} - services.keys()
    assert not missing, f"docker-compose.yml lacks services: {sorted(missing)}"
    assert services["kafka"]["image"] == KAFKA_IMAGE


def test_each_unit_runs_in_exactly_one_container(services: dict[str, dict[str, Any]]) -> None:
    run = [_unit_of(svc.get("command") or []) for svc in _built(services).values()]
    ran = sorted(unit for unit in run if unit is not None)
    assert ran == unit_names(), "each unit under services/ needs one `run unit` container"
    for name in unit_names():
        assert services[name]["command"] == ["run", "unit", name]


def test_every_built_service_runs_a_valid_mbs_command(
    services: dict[str, dict[str, Any]],
) -> None:
    built = _built(services)
    assert {"gateway", *unit_names()} <= built.keys(), "units and gateway use the Dockerfile"
    for name, svc in built.items():
        command = svc.get("command")
        assert isinstance(command, list), f"{name}: command must be an exec-form list"
        unit = _unit_of(command)
        if unit is not None:
            loaded = load_unit(unit)
            assert loaded.name == unit, f"{name}: `run unit {unit}` loads unit {loaded.name!r}"
        elif command == ["run", "gateway"]:
            gateway_app = importlib.import_module("gateway.app")
            assert callable(getattr(gateway_app, "create_app", None)), f"{name}: no create_app"
        else:
            pytest.fail(f"{name}: unknown mbs command {command!r}")


@pytest.mark.parametrize("verb", [["run", "unit"], ["run", "gateway"]])
def test_cli_knows_the_commands_compose_uses(verb: list[str]) -> None:
    result = CliRunner().invoke(cli_app, [*verb, "--help"])
    assert result.exit_code == 0, result.output


def test_built_services_reach_kafka_once_it_is_healthy(
    services: dict[str, dict[str, Any]],
) -> None:
    advertised = _environment(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    assert f"PLAINTEXT://{BOOTSTRAP}" in advertised.split(",")
    assert "kafka-broker-api-versions.sh" in " ".join(services["kafka"]["healthcheck"]["test"])
    for name, svc in _built(services).items():
        assert _environment(svc).get("MBS_KAFKA_BOOTSTRAP") == BOOTSTRAP, name
        condition = svc.get("depends_on", {}).get("kafka", {}).get("condition")
        assert condition == "service_healthy", f"{name} must wait for a healthy kafka"
        assert svc.get("restart") == "unless-stopped", name


def test_gateway_listens_on_all_interfaces_and_checks_readiness(
    services: dict[str, dict[str, Any]],
) -> None:
    gateway = services["gateway"]
    env = _environment(gateway)
    assert env["MBS_GATEWAY_HOST"] == "0.0.0.0"
    port = env.get("MBS_GATEWAY_PORT", "8080")
    assert f"{port}:{port}" in [str(p) for p in gateway.get("ports", [])]
    probe = " ".join(gateway["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/readyz" in probe


def test_docker_compose_accepts_the_file() -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed")
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    pairs = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        pairs.append((keyword.upper(), args.strip()))
    return pairs


def test_dockerfile_runs_mbs_as_a_non_root_user() -> None:
    instructions = _dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    entrypoints = [args for keyword, args in instructions if keyword == "ENTRYPOINT"]
    assert entrypoints, "Dockerfile has no ENTRYPOINT"
    assert json.loads(entrypoints[-1]) == ["mbs"]
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, "Dockerfile has no USER: the image would run as root"
    assert users[-1] not in {"root", "0"}, "the image must not run as root"


def test_dockerfile_copies_every_package_pyproject_installs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.split(".")[0].rstrip("*") for pattern in includes}
    assert packages, "pyproject declares no packages"
    copied: set[str] = set()
    for keyword, args in _dockerfile_instructions():
        if keyword == "COPY":
            sources = [arg for arg in args.split() if not arg.startswith("--")][:-1]
            copied.update(source.rstrip("/").removeprefix("./") for source in sources)
    missing = (packages | {"pyproject.toml", pyproject["project"]["readme"]}) - copied
    assert not missing, f"Dockerfile does not COPY {sorted(missing)}"
