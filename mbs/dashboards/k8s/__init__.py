"""Kubernetes manifests generated from the contracts: a Kustomize base (deploy/k8s/base) of
the Strimzi Kafka cluster, its topics and users, a Deployment per unit and for the gateway
with their autoscaling, and the Prometheus Operator and Grafana resources.

Why Kustomize and not Helm: the templating is this generator, in Python, from the contracts;
a chart would add a second template language over it and need `helm template` before any
check. The base is the final YAML, byte-comparable and validated as it is, and overlays
(deploy/k8s/overlays, kept by hand) only patch what differs per environment.

`python -m mbs.dashboards.k8s deploy/k8s` writes it; tests/unit/test_k8s.py fails when the
files differ from a fresh generation.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mbs.contract.model import Contract
from mbs.dashboards.common import _contracts
from mbs.dashboards.k8s.common import GENERATED, NAMESPACE, Json, dump
from mbs.dashboards.k8s.kafka import cluster, kafka_topics, kafka_users, node_pool, topics
from mbs.dashboards.k8s.monitoring import dashboard_config_maps, prometheus_rule, service_monitors
from mbs.dashboards.k8s.workloads import gateway_resources, unit_resources
from mbs.settings import Settings

BASE = "base"


def _kustomization(files: list[str], namespace: str) -> Json:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace,
        "resources": files,
    }


def rendered(
    contracts: Sequence[Contract] | None = None, namespace: str = NAMESPACE
) -> dict[str, str]:
    """Every generated file's text by its path under deploy/k8s. Topic names and the
    gateway's group are the defaults (MBS_* in this process's environment are ignored), so
    the output depends on the contracts alone."""
    found = _contracts(contracts)
    settings = Settings.model_construct()
    wanted = topics(found, settings)
    by_unit: dict[str, list[Contract]] = {}
    for contract in found:
        by_unit.setdefault(contract.unit, []).append(contract)
    files = {
        "kafka.yaml": dump([cluster(), node_pool()]),
        "topics.yaml": dump(kafka_topics(wanted)),
        "users.yaml": dump(kafka_users(found, settings)),
        "gateway.yaml": dump(gateway_resources(namespace)),
        "monitoring.yaml": dump([*service_monitors(), prometheus_rule(found)]),
        "dashboards.yaml": dump(dashboard_config_maps(found)),
    }
    for unit, offered in sorted(by_unit.items()):
        files[f"units/{unit}.yaml"] = dump(unit_resources(unit, offered, wanted, namespace))
    files["kustomization.yaml"] = dump([_kustomization(list(files), namespace)])
    return {f"{BASE}/{name}": text for name, text in files.items()}


def write_all(
    directory: Path, contracts: Sequence[Contract] | None = None, namespace: str = NAMESPACE
) -> list[Path]:
    """Write the base under `directory` (deploy/k8s), removing generated files no longer
    generated (a unit gone); overlays/ is never touched. Returns the paths written."""
    files = rendered(contracts, namespace)
    for old in sorted((directory / BASE).rglob("*.yaml")):
        if old.relative_to(directory).as_posix() not in files and _generated(old):
            old.unlink()
    written = []
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def stale(
    directory: Path, contracts: Sequence[Contract] | None = None, namespace: str = NAMESPACE
) -> list[str]:
    """The paths under `directory` that a regeneration would change, add or remove."""
    files = rendered(contracts, namespace)
    changed = [
        relative
        for relative, text in files.items()
        if not (directory / relative).is_file() or (directory / relative).read_text() != text
    ]
    extra = [
        old.relative_to(directory).as_posix()
        for old in sorted((directory / BASE).rglob("*.yaml"))
        if old.relative_to(directory).as_posix() not in files and _generated(old)
    ]
    return sorted(changed + extra)


def _generated(path: Path) -> bool:
    with path.open() as text:
        return text.readline().strip() == f"# {GENERATED}"


def parser() -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(
        prog="python -m mbs.dashboards.k8s",
        description="Generate the Kubernetes manifests (a Kustomize base) from the contracts.",
        epilog="In a checkout: python -m mbs.dashboards.k8s deploy/k8s",
    )
    found.add_argument("directory", type=Path, help="where base/ goes; the checkout's: deploy/k8s")
    found.add_argument(
        "--namespace",
        default=NAMESPACE,
        help=f"the namespace it runs in (default {NAMESPACE}); KEDA reaches Kafka by its full name",
    )
    found.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 listing each file a regeneration would change",
    )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when written (or, with --check, up to date), 1 when --check finds a
    difference, 2 on a usage error."""
    args = parser().parse_args(argv)
    directory: Path = args.directory
    if args.check:
        differ = stale(directory, namespace=args.namespace)
        for relative in differ:
            print(f"differs: {directory / relative}", file=sys.stderr)
        return 1 if differ else 0
    for path in write_all(directory, namespace=args.namespace):
        print(path)
    return 0


__all__ = ["NAMESPACE", "main", "rendered", "stale", "write_all"]
