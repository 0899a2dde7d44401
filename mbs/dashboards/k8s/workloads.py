"""The processes: a Deployment per unit (scaled by KEDA on its consumer groups' lag) and for
the gateway (scaled by an HPA), with their Services, probes, resources and disruption
budgets. Each runs the one image of ./Dockerfile under its own Kafka principal."""

from __future__ import annotations

from collections.abc import Sequence

from mbs.broker.security import GATEWAY
from mbs.contract.model import Contract
from mbs.dashboards.k8s.common import (
    GATEWAY_PORT,
    GATEWAY_SECRET,
    IMAGE,
    RUN_AS,
    STATE_DIR,
    UNIT_PORT,
    Json,
    bootstrap,
    meta,
    selector,
)
from mbs.dashboards.k8s.kafka import JOURNEY_STATE_PARTITIONS, Topic
from mbs.unit.hosting import GRACEFUL_TIMEOUT_S

LAG_PER_REPLICA = 20  # waiting requests one more replica is worth starting for
GATEWAY_MIN = 2
GATEWAY_MAX = JOURNEY_STATE_PARTITIONS  # each owns journey-log partitions; more would idle
UNIT_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
GATEWAY_RESOURCES = {"requests": {"cpu": "250m", "memory": "384Mi"}, "limits": {"memory": "1Gi"}}


def _env(values: dict[str, str], secrets: dict[str, tuple[str, str]]) -> list[Json]:
    plain: list[Json] = [{"name": k, "value": v} for k, v in values.items()]
    refs: list[Json] = [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}
        for k, (name, key) in secrets.items()
    ]
    return sorted(plain + refs, key=lambda e: str(e["name"]))


def _probe(path: str, port: str, period: int, failures: int) -> Json:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def _container(name: str, args: list[str], env: list[Json], port: tuple[str, int]) -> Json:
    """Ready on /readyz, restarted when /healthz stops answering, given a minute to start."""
    port_name, number = port
    return {
        "name": name,
        "image": IMAGE,
        "args": args,
        "env": env,
        "ports": [{"name": port_name, "containerPort": number, "protocol": "TCP"}],
        "startupProbe": _probe("/healthz", port_name, 2, 30),
        "livenessProbe": _probe("/healthz", port_name, 10, 3),
        "readinessProbe": _probe("/readyz", port_name, 5, 3),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def _pod_security() -> Json:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _deployment(name: str, component: str, pod: Json) -> Json:
    """No `replicas`: KEDA or the HPA owns that number, and a re-apply must not reset it."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, component),
        "spec": {
            "selector": {"matchLabels": selector(name)},
            "template": {"metadata": {"labels": meta(name, component)["labels"]}, "spec": pod},
        },
    }


def _service(name: str, component: str, port: tuple[str, int]) -> Json:
    port_name, number = port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, component),
        "spec": {
            "selector": selector(name),
            "ports": [{"name": port_name, "port": number, "targetPort": port_name}],
        },
    }


def _budget(name: str, component: str, rule: Json) -> Json:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(name, component),
        "spec": {**rule, "selector": {"matchLabels": selector(name)}},
    }


def kafka_env(principal: str) -> dict[str, tuple[str, str]]:
    """The password Strimzi's User Operator keeps in the KafkaUser's Secret."""
    return {"MBS_KAFKA_PASSWORD": (principal, "password")}


def unit_resources(
    unit: str, offered: Sequence[Contract], topics: Sequence[Topic], namespace: str
) -> list[Json]:
    """A unit: its state volume, Deployment, Service (for the ServiceMonitor), disruption
    budget, and a ScaledObject on its groups' lag. Its replicas share one SQLite file (see
    README, "Where a unit keeps its state"), which needs one host: a ReadWriteOnce volume
    and pods kept together on the node that mounts it."""
    claim = f"{unit}-state"
    values = {
        "MBS_KAFKA_BOOTSTRAP": bootstrap(namespace),
        "MBS_KAFKA_USERNAME": unit,
        "MBS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "MBS_LOG_LEVEL": "INFO",
        "MBS_UNIT_HOST": "0.0.0.0",
        "MBS_UNIT_PORT": str(UNIT_PORT),
        "MBS_UNIT_STATE_DIR": STATE_DIR,
    }
    container = _container(
        "unit", ["run", "unit", unit], _env(values, kafka_env(unit)), ("ops", UNIT_PORT)
    )
    container["resources"] = UNIT_RESOURCES
    container["volumeMounts"] = [{"name": "state", "mountPath": STATE_DIR}]
    together = {
        "labelSelector": {"matchLabels": selector(unit)},
        "topologyKey": "kubernetes.io/hostname",
    }
    pod = {
        "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [together]}},
        "containers": [container],
        "securityContext": _pod_security(),
        "terminationGracePeriodSeconds": GRACEFUL_TIMEOUT_S + 15,
        "volumes": [{"name": "state", "persistentVolumeClaim": {"claimName": claim}}],
    }
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta(claim, "unit"),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    return [
        volume,
        _deployment(unit, "unit", pod),
        _service(unit, "unit", ("ops", UNIT_PORT)),
        _budget(unit, "unit", {"maxUnavailable": 1}),
        *scaling(unit, offered, topics, namespace),
    ]


def scaling(
    unit: str, offered: Sequence[Contract], topics: Sequence[Topic], namespace: str
) -> list[Json]:
    """A trigger per request topic on the lag of the group that reads it; at most as many
    replicas as the largest of those topics has partitions (any more would idle). KEDA logs
    in as the unit itself: reading its groups' offsets needs no ACL the unit lacks."""
    partitions = {t.name: t.partitions for t in topics}
    auth = f"{unit}-kafka"
    triggers = [
        {
            "type": "kafka",
            "metadata": {
                "bootstrapServers": bootstrap(namespace),
                "consumerGroup": f"mbs.unit.{unit}.{c.capability}",
                "topic": c.request_topic,
                "lagThreshold": str(LAG_PER_REPLICA),
                "offsetResetPolicy": "earliest",
                "allowIdleConsumers": "false",
                "sasl": "scram_sha512",
                "tls": "disable",
            },
            "authenticationRef": {"name": auth},
        }
        for c in sorted(offered, key=lambda c: c.request_topic)
    ]
    authentication = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": meta(auth, "unit"),
        "spec": {
            "env": [
                {"parameter": "username", "name": "MBS_KAFKA_USERNAME", "containerName": "unit"}
            ],
            "secretTargetRef": [{"parameter": "password", "name": unit, "key": "password"}],
        },
    }
    scaled = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": meta(unit, "unit"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": unit},
            "minReplicaCount": 1,
            "maxReplicaCount": max(partitions[c.request_topic] for c in offered),
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "triggers": triggers,
        },
    }
    return [authentication, scaled]


def gateway_resources(namespace: str) -> list[Json]:
    """The gateway: spread over nodes, at least two, more on CPU; its keys from a Secret the
    cluster's operator makes (GATEWAY_SECRET: `api-keys`, `secrets-key`, `metrics-key`)."""
    values = {
        "MBS_GATEWAY_HOST": "0.0.0.0",
        "MBS_GATEWAY_PORT": str(GATEWAY_PORT),
        "MBS_KAFKA_BOOTSTRAP": bootstrap(namespace),
        "MBS_KAFKA_USERNAME": GATEWAY,
        "MBS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "MBS_LOG_LEVEL": "INFO",
    }
    secrets = {
        **kafka_env(GATEWAY),
        "MBS_API_KEYS": (GATEWAY_SECRET, "api-keys"),
        "MBS_SECRETS_KEY": (GATEWAY_SECRET, "secrets-key"),
    }
    container = _container(
        GATEWAY, ["run", "gateway"], _env(values, secrets), ("http", GATEWAY_PORT)
    )
    container["resources"] = GATEWAY_RESOURCES
    spread = {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": selector(GATEWAY)},
    }
    pod = {
        "containers": [container],
        "securityContext": _pod_security(),
        "topologySpreadConstraints": [spread],
    }
    cpu = {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    autoscaler = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(GATEWAY, "gateway"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": GATEWAY},
            "minReplicas": GATEWAY_MIN,
            "maxReplicas": GATEWAY_MAX,
            "metrics": [{"type": "Resource", "resource": cpu}],
        },
    }
    return [
        _deployment(GATEWAY, "gateway", pod),
        _service(GATEWAY, "gateway", ("http", GATEWAY_PORT)),
        _budget(GATEWAY, "gateway", {"minAvailable": 1}),
        autoscaler,
    ]
