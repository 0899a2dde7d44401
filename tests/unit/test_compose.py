"""docker-compose.yml and the Dockerfile stay in step with the code they run.

Checked without a Docker engine: the compose file's structure, that every container's
command is one the `mbs` CLI understands and can load, that `docker-compose config`
accepts the file, that the image installs every package pyproject declares, and that the
observability services (Prometheus, Grafana, the otel collector, Jaeger) mount files that
exist and point at the services the file really runs.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from ecosystem import ECOSYSTEM
from mbs.cli import app as cli_app
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
KAFKA_IMAGE = "apache/kafka:3.9.1"
BOOTSTRAP = "kafka:9092"
OBSERVABILITY_IMAGES = {
    "prometheus": "prom/prometheus",
    "grafana": "grafana/grafana",
    "otel-collector": "otel/opentelemetry-collector-contrib",
    "jaeger": "jaegertracing/all-in-one",
}
OTLP_ENDPOINT = "http://otel-collector:4318"


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
    names = ECOSYSTEM.unit_names()
    assert names, "no unit packages found under services/"
    missing = {"kafka", "gateway", *names} - services.keys()
    assert not missing, f"docker-compose.yml lacks services: {sorted(missing)}"
    assert services["kafka"]["image"] == KAFKA_IMAGE


def test_each_unit_runs_in_exactly_one_container(services: dict[str, dict[str, Any]]) -> None:
    run = [_unit_of(svc.get("command") or []) for svc in _built(services).values()]
    ran = sorted(unit for unit in run if unit is not None)
    assert ran == ECOSYSTEM.unit_names(), "each unit under services/ needs one `run unit` container"
    for name in ECOSYSTEM.unit_names():
        assert services[name]["command"] == ["run", "unit", name]


def test_every_built_service_runs_a_valid_mbs_command(
    services: dict[str, dict[str, Any]],
) -> None:
    built = _built(services)
    assert {"gateway", *ECOSYSTEM.unit_names()} <= built.keys(), (
        "units and gateway use the Dockerfile"
    )
    for name, svc in built.items():
        command = svc.get("command")
        assert isinstance(command, list), f"{name}: command must be an exec-form list"
        unit = _unit_of(command)
        if unit is not None:
            loaded = ECOSYSTEM.load_unit(unit)
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
    require_tool("docker-compose", "apt-get install docker-compose")
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


# --- Observability -----------------------------------------------------------------------


def _binds(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of each bind mount in the short `src:dst[:mode]` form."""
    binds = []
    for volume in service.get("volumes") or []:
        assert isinstance(volume, str), f"use the short volume syntax: {volume!r}"
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            binds.append((source, target))
    return binds


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    """Where a path inside the container comes from on the host, through its bind mounts."""
    for source, target in _binds(service):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return ROOT / source / container_path[len(target) :].lstrip("/")
    raise AssertionError(f"{container_path} is not bind-mounted from the repository")


def _flag(command: list[str], name: str) -> str:
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"{name}=")]
    assert len(values) == 1, f"expected one {name}=... in {command}"
    return values[0]


def _published(service: dict[str, Any]) -> set[int]:
    """Container ports the service publishes to the host."""
    return {int(str(port).rsplit(":", 1)[-1].split("/")[0]) for port in service.get("ports", [])}


@pytest.mark.parametrize("name", sorted(OBSERVABILITY_IMAGES))
def test_observability_services_run_on_their_images(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    assert name in services, f"docker-compose.yml lacks the {name} service"
    image = services[name].get("image", "")
    assert image.split(":")[0] == OBSERVABILITY_IMAGES[name], image
    assert "build" not in services[name]


def test_every_mounted_host_path_exists(services: dict[str, dict[str, Any]]) -> None:
    mounts = [(name, src) for name, svc in services.items() for src, _ in _binds(svc)]
    assert mounts, "no service mounts anything from the repository"
    missing = [(name, src) for name, src in mounts if not (ROOT / src).exists()]
    assert not missing, f"mounted host paths missing from the repository: {missing}"


@pytest.fixture(scope="module")
def scrape_config(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The Prometheus config the prometheus service is told to load, read from the host."""
    prometheus = services["prometheus"]
    path = _host_path(prometheus, _flag(prometheus["command"], "--config.file"))
    assert path.parent == ROOT / "deploy" / "prometheus", path
    assert path.is_file(), f"{path} does not exist: regenerate with `python -m mbs.dashboards`"
    config = yaml.safe_load(path.read_text())
    assert isinstance(config, dict), f"{path} is not a mapping"
    for rule_file in config.get("rule_files", []):
        assert (path.parent / rule_file).is_file(), f"{rule_file} is not next to {path.name}"
    return config


def _targets(config: dict[str, Any], job: str) -> list[tuple[str, dict[str, str]]]:
    (found,) = [j for j in config["scrape_configs"] if j["job_name"] == job]
    return [(t, sc.get("labels", {})) for sc in found["static_configs"] for t in sc["targets"]]


def test_prometheus_scrapes_every_unit_container(
    services: dict[str, dict[str, Any]], scrape_config: dict[str, Any]
) -> None:
    units = {
        unit: name
        for name, svc in _built(services).items()
        if (unit := _unit_of(svc.get("command") or [])) is not None
    }
    assert units, "no unit containers in docker-compose.yml"
    scraped = {
        labels.get("unit"): target for target, labels in _targets(scrape_config, "mbs-units")
    }
    assert set(scraped) == set(units), "prometheus must scrape exactly the compose units"
    for unit, service in units.items():
        port = _environment(services[service])["MBS_UNIT_PORT"]
        assert scraped[unit] == f"{service}:{port}", unit


def test_prometheus_scrapes_the_gateway(
    services: dict[str, dict[str, Any]], scrape_config: dict[str, Any]
) -> None:
    port = _environment(services["gateway"]).get("MBS_GATEWAY_PORT", "8080")
    assert [t for t, _ in _targets(scrape_config, "mbs-gateway")] == [f"gateway:{port}"]
    (job,) = [j for j in scrape_config["scrape_configs"] if j["job_name"] == "mbs-gateway"]
    # gateway/app.py mounts its metrics app at /metrics; /metrics itself only redirects.
    assert job.get("metrics_path") == "/metrics/"


def test_prometheus_and_grafana_are_wired_together(services: dict[str, dict[str, Any]]) -> None:
    assert 9090 in _published(services["prometheus"])
    grafana = services["grafana"]
    assert 3000 in _published(grafana)
    assert "prometheus" in grafana.get("depends_on", [])
    env = _environment(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    provisioning = _host_path(grafana, "/etc/grafana/provisioning")
    assert provisioning == ROOT / "deploy" / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert [s["url"] for s in sources["datasources"]] == ["http://prometheus:9090"]
    providers = yaml.safe_load((provisioning / "dashboards" / "mbs.yml").read_text())
    for provider in providers["providers"]:
        boards = _host_path(grafana, provider["options"]["path"])
        assert list(boards.glob("*.json")), f"no dashboards at {boards}"


def test_every_process_exports_traces_to_the_collector(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, svc in _built(services).items():
        env = _environment(svc)
        assert env.get("OTEL_TRACES_EXPORTER") == "otlp", name
        assert env.get("OTEL_EXPORTER_OTLP_ENDPOINT") == OTLP_ENDPOINT, name
        assert "OTEL_SERVICE_NAME" not in env, f"{name}: the process names its own service"


def test_collector_receives_otlp_and_forwards_to_jaeger(
    services: dict[str, dict[str, Any]],
) -> None:
    collector = services["otel-collector"]
    assert {4317, 4318} <= _published(collector)
    path = _host_path(collector, _flag(collector["command"], "--config"))
    assert path == ROOT / "deploy" / "otel" / "collector.yaml"
    config = yaml.safe_load(path.read_text())
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    assert config["exporters"]["otlp"]["endpoint"] == "jaeger:4317"
    assert config["exporters"]["otlp"]["tls"]["insecure"] is True
    traces = config["service"]["pipelines"]["traces"]
    assert traces == {
        "receivers": ["otlp"],
        "processors": ["batch"],
        "exporters": ["otlp", "debug"],
    }
    assert set(traces["processors"]) <= set(config["processors"])
    jaeger = services["jaeger"]
    assert _environment(jaeger)["COLLECTOR_OTLP_ENABLED"] == "true"
    assert 16686 in _published(jaeger)
