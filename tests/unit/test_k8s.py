"""deploy/k8s is generated from the contracts and stays in step with them: the checked-in
base is byte for byte what `python -m mbs.dashboards.k8s` writes, a changed contract changes
it, and what it says holds: the KafkaUsers grant exactly what `mbs broker up --secure` grants,
topics are replicated and compacted as the design says, units scale on their own groups'
lag, every process is probed and budgeted, monitoring is the generated rules and dashboards.
(Schema validation of every resource: tests/unit/test_k8s_schemas.py.)
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from contracts import all_contracts
from gateway.definition.store import DEFS_CONFIG
from gateway.runlog import STATE_CONFIG, STATE_PARTITIONS
from mbs import Contract
from mbs.broker import provision
from mbs.broker.security import Credentials, ecosystem_grants
from mbs.dashboards.k8s import main, rendered, stale
from mbs.dashboards.k8s.kafka import (
    JOURNEY_DEFS_CONFIG,
    JOURNEY_STATE_CONFIG,
    JOURNEY_STATE_PARTITIONS,
    acl_rules,
)
from mbs.settings import Settings

Json = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# Keys Strimzi sets itself and refuses in spec.kafka.config (KafkaClusterSpec).
FORBIDDEN = ("listeners", "advertised.", "broker.", "listener.", "sasl.", "ssl.", "security.")
FORBIDDEN += ("authorizer.", "super.user", "node.id", "process.roles", "controller.")


def generated(contracts: list[Contract] | None = None) -> list[Json]:
    texts = rendered(contracts).values()
    found = [d for text in texts for d in yaml.safe_load_all(text) if d]
    return [d for d in found if d["kind"] != "Kustomization"]


@cache
def _checked_in() -> str:
    files = sorted((K8S / "base").rglob("*.yaml"))
    return json.dumps([d for f in files for d in yaml.safe_load_all(f.read_text()) if d])


def of_kind(name: str, docs: list[Json] | None = None) -> dict[str, Json]:
    """The checked-in base's resources of one kind (or those of `docs`), by name."""
    found = json.loads(_checked_in()) if docs is None else docs
    return {d["metadata"]["name"]: d for d in found if d["kind"] == name}


def test_the_base_is_what_the_contracts_generate_today() -> None:
    assert stale(K8S) == [], "run: python -m mbs.dashboards.k8s deploy/k8s"


def test_python_m_writes_the_checked_in_base_byte_for_byte(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    kept = sorted(p.relative_to(K8S) for p in (K8S / "base").rglob("*") if p.is_file())
    assert written == kept
    for relative in written:
        assert (tmp_path / relative).read_bytes() == (K8S / relative).read_bytes(), relative
    assert main([str(tmp_path), "--check"]) == 0
    (tmp_path / "base" / "units" / "retired.yaml").write_text((tmp_path / kept[-1]).read_text())
    assert main([str(tmp_path), "--check"]) == 1, "a generated file no unit needs is stale"


def test_a_new_capability_changes_the_manifests() -> None:
    contracts = all_contracts()
    extra = contracts[0].model_copy(update={"capability": "pricing.forecast"})
    assert rendered([*contracts, extra]) != rendered(contracts)
    docs = generated([*contracts, extra])
    assert {extra.request_topic, extra.dlq_topic} <= of_kind("KafkaTopic", docs).keys()
    triggers = of_kind("ScaledObject", docs)[extra.unit]["spec"]["triggers"]
    assert extra.request_topic in [t["metadata"]["topic"] for t in triggers]
    acls = of_kind("KafkaUser", docs)[extra.unit]["spec"]["authorization"]["acls"]
    assert extra.request_topic in [a["resource"].get("name") for a in acls]


def test_kafka_is_three_kraft_nodes_and_leaves_strimzi_its_own_configs() -> None:
    [pool] = of_kind("KafkaNodePool").values()
    assert pool["spec"]["replicas"] == 3
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    [kafka] = of_kind("Kafka").values()
    config = kafka["spec"]["kafka"]["config"]
    assert config["min.insync.replicas"] == 2
    assert config["default.replication.factor"] == 3
    assert not [k for k in config if k.startswith(FORBIDDEN)]


def test_topics_are_replicated_and_compacted_where_the_design_says() -> None:
    assert (JOURNEY_STATE_PARTITIONS, JOURNEY_STATE_CONFIG) == (STATE_PARTITIONS, STATE_CONFIG)
    assert JOURNEY_DEFS_CONFIG == DEFS_CONFIG
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind("KafkaTopic").values()}
    platform = ["mbs.contracts", "mbs.certifications", "mbs.journeys.defs", "mbs.journeys.state"]
    compacted = {*platform, *(f"{t}.dlq" for t in platform)}
    for name, spec in topics.items():
        assert (spec["replicas"], spec["config"]["min.insync.replicas"]) == (3, "2"), name
        assert (spec["config"].get("cleanup.policy") == "compact") == (name in compacted), name
    assert topics["mbs.journeys.state"]["partitions"] == STATE_PARTITIONS
    for contract in all_contracts():
        for name in (contract.request_topic, contract.dlq_topic, contract.reply_topic):
            assert topics[name]["partitions"] == 3, name


def test_kafka_users_grant_exactly_what_secure_provisioning_grants(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`mbs broker up --secure`'s provisioning runs against an admin that records grants."""
    granted: dict[str, list[Any]] = {}

    class Recorder:
        def __init__(self, *_: object) -> None: ...

        def topics(self, *_: object, **__: object) -> None: ...

        def grant(self, principal: str, grants: list[Any]) -> None:
            granted.setdefault(principal, []).extend(grants)

        def principal(self, name: str) -> Credentials:
            return Credentials(name, "not-a-secret")

    monkeypatch.setattr(provision, "SecurityAdmin", Recorder)
    monkeypatch.setattr(provision, "register_as_admin", lambda *_: None)
    broker: Any = SimpleNamespace(run_dir=tmp_path, address="-", admin_password=lambda: "-")
    settings = Settings.model_construct()
    provision.provision_ecosystem(broker, settings, all_contracts(), lambda _: None)
    expected = ecosystem_grants(all_contracts(), settings)
    assert {p: set(g) for p, g in granted.items()} == {p: set(g) for p, g in expected.items()}
    users = of_kind("KafkaUser")
    assert {name: u["spec"]["authorization"]["acls"] for name, u in users.items()} == {
        principal: acl_rules(grants) for principal, grants in expected.items()
    }
    gateway = {
        (acl["resource"]["name"], operation)
        for acl in users["gateway"]["spec"]["authorization"]["acls"]
        for operation in acl["operations"]
    }
    for quarantine in ("mbs.contracts.dlq", "mbs.certifications.dlq"):
        assert {(quarantine, "Write"), (quarantine, "Create")} <= gateway


def test_units_scale_on_each_groups_lag_up_to_their_partitions() -> None:
    scaled, topics = of_kind("ScaledObject"), of_kind("KafkaTopic")
    wanted: dict[str, set[tuple[str, str]]] = {}
    for c in all_contracts():
        wanted.setdefault(c.unit, set()).add((c.request_topic, f"mbs.unit.{c.unit}.{c.capability}"))
    assert scaled.keys() == wanted.keys()
    for unit, pairs in wanted.items():
        spec = scaled[unit]["spec"]
        got = {(t["metadata"]["topic"], t["metadata"]["consumerGroup"]) for t in spec["triggers"]}
        assert got == pairs, unit
        partitions = max(topics[topic]["spec"]["partitions"] for topic, _ in pairs)
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
        assert {t["authenticationRef"]["name"] for t in spec["triggers"]} == {f"{unit}-kafka"}


def test_every_process_is_probed_resourced_budgeted_and_autoscaled() -> None:
    deployments, budgets = of_kind("Deployment"), of_kind("PodDisruptionBudget")
    units = {c.unit for c in all_contracts()}
    assert deployments.keys() == budgets.keys() == {*units, "gateway"}
    assert of_kind("HorizontalPodAutoscaler").keys() == {"gateway"}
    for name, deployment in deployments.items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["resources"]["requests"], name
        assert container["resources"]["limits"], name
        assert "replicas" not in deployment["spec"], f"{name}: its autoscaler owns replicas"
        assert container["args"] == (
            ["run", "gateway"] if name == "gateway" else ["run", "unit", name]
        )
        env = {e["name"]: e for e in container["env"]}
        assert env["MBS_KAFKA_USERNAME"]["value"] == name, "each runs as its own principal"
        password = env["MBS_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert password == {"name": name, "key": "password"}, "Strimzi's Secret of its user"
    [gateway] = deployments["gateway"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in gateway["env"]}
    for variable, key in (("MBS_API_KEYS", "api-keys"), ("MBS_SECRETS_KEY", "secrets-key")):
        assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": "mbs-gateway", "key": key}


def test_monitoring_is_the_generated_rules_and_dashboards() -> None:
    deploy = ROOT / "deploy"
    [rule] = of_kind("PrometheusRule").values()
    files = [deploy / "prometheus" / f for f in ("recording.rules.yml", "alerts.rules.yml")]
    assert rule["spec"]["groups"] == [
        g for f in files for g in yaml.safe_load(f.read_text())["groups"]
    ]
    boards = {
        key: json.loads(text)
        for config_map in of_kind("ConfigMap").values()
        for key, text in config_map["data"].items()
    }
    on_disk = (deploy / "grafana" / "dashboards").glob("*.json")
    assert boards == {p.name: json.loads(p.read_text()) for p in on_disk}
    monitors = of_kind("ServiceMonitor")
    [gateway] = monitors["mbs-gateway"]["spec"]["endpoints"]
    assert gateway["authorization"]["credentials"] == {"name": "mbs-gateway", "key": "metrics-key"}
    # the alert rules match `up{job="mbs-units", unit=...}`, as deploy/prometheus scrapes them
    [units] = monitors["mbs-units"]["spec"]["endpoints"]
    labels = {r["targetLabel"]: r.get("replacement") for r in units["relabelings"]}
    assert labels == {"job": "mbs-units", "unit": None}
