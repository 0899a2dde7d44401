"""The Kafka cluster as Strimzi resources: the cluster and its node pool (three KRaft nodes),
every topic the platform and its units use, and a KafkaUser per unit and the gateway carrying
exactly the ACLs `mbs broker up --secure` grants (both come from `ecosystem_grants`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from confluent_kafka.admin import ResourcePatternType, ResourceType

from mbs import wire as h
from mbs.broker.security import Grant, ecosystem_grants
from mbs.contract.model import Contract
from mbs.dashboards.k8s.common import (
    CLUSTER,
    KAFKA_PORT,
    MIN_INSYNC,
    REPLICAS,
    Json,
    meta,
    principal_name,
    topic_resource_name,
)
from mbs.errors import MbsError
from mbs.kafka.admin import DEFAULT_PARTITIONS
from mbs.kafka.compacted import COMPACTED
from mbs.kafka.quarantine import DLQ_CONFIG, dlq_topic
from mbs.settings import Settings

STRIMZI = "kafka.strimzi.io/v1"  # Strimzi 1.0 removed v1beta2 from its CRDs
NODE_POOL = "dual-role"
# The gateway's topics as gateway/runlog.py and gateway/definition/store.py create them (the
# kit never imports the gateway; tests/unit/test_k8s.py keeps these in step with it).
JOURNEY_STATE_PARTITIONS = 6
JOURNEY_STATE_CONFIG = {
    "cleanup.policy": "compact",
    "min.compaction.lag.ms": "60000",
    "segment.ms": "3600000",
}
JOURNEY_DEFS_CONFIG = {"cleanup.policy": "compact"}

_RESOURCE = {
    ResourceType.TOPIC: "topic",
    ResourceType.GROUP: "group",
    ResourceType.BROKER: "cluster",
    ResourceType.TRANSACTIONAL_ID: "transactionalId",
}
_PATTERN = {ResourcePatternType.LITERAL: "literal", ResourcePatternType.PREFIXED: "prefix"}


@dataclass(frozen=True)
class Topic:
    """A topic as its first user would create it: partitions and configs."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def topics(contracts: Iterable[Contract], settings: Settings) -> list[Topic]:
    """Every topic: the platform's compacted ones and their quarantines, and each contract's
    request, dead-letter and reply topics; all with min.insync.replicas 2."""
    found: dict[str, Topic] = {}

    def add(name: str, partitions: int, config: dict[str, str]) -> None:
        topic = Topic(name, partitions, {**config, "min.insync.replicas": str(MIN_INSYNC)})
        if found.setdefault(name, topic) != topic:
            raise MbsError(f"topic {name} is wanted as {found[name]} and as {topic}")

    platform = [
        (settings.contracts_topic, 1, COMPACTED),
        (settings.certifications_topic, 1, COMPACTED),
        (settings.definitions_topic, 1, JOURNEY_DEFS_CONFIG),
        (settings.journeys_topic, JOURNEY_STATE_PARTITIONS, JOURNEY_STATE_CONFIG),
    ]
    for name, partitions, config in platform:
        add(name, partitions, config)
        add(dlq_topic(name), 1, DLQ_CONFIG)
    for contract in contracts:
        add(contract.request_topic, DEFAULT_PARTITIONS, {})
        add(contract.dlq_topic, DEFAULT_PARTITIONS, {})
        add(h.reply_topic(contract.unit), DEFAULT_PARTITIONS, {})
    return sorted(found.values(), key=lambda t: t.name)


def cluster() -> Json:
    """Three brokers that are also the KRaft controllers (the quorum needs three voters, the
    topics three replicas; split the roles into two pools when load asks for it)."""
    config = {
        "auto.create.topics.enable": False,  # every topic is a KafkaTopic
        "default.replication.factor": REPLICAS,
        "min.insync.replicas": MIN_INSYNC,
        "num.partitions": DEFAULT_PARTITIONS,
        "offsets.topic.replication.factor": REPLICAS,
        "transaction.state.log.replication.factor": REPLICAS,
        "transaction.state.log.min.isr": MIN_INSYNC,
    }
    plain = {
        "name": "plain",
        "port": KAFKA_PORT,
        "type": "internal",
        "tls": False,
        "authentication": {"type": "scram-sha-512"},
    }
    kafka = {"listeners": [plain], "authorization": {"type": "simple"}, "config": config}
    return {
        "apiVersion": STRIMZI,
        "kind": "Kafka",
        "metadata": meta(CLUSTER, "kafka"),
        "spec": {"kafka": kafka, "entityOperator": {"topicOperator": {}, "userOperator": {}}},
    }


def node_pool() -> Json:
    volume = {
        "id": 0,
        "type": "persistent-claim",
        "size": "20Gi",
        "deleteClaim": False,
        "kraftMetadata": "shared",
    }
    resources = {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}
    return {
        "apiVersion": STRIMZI,
        "kind": "KafkaNodePool",
        "metadata": meta(NODE_POOL, "kafka", extra_labels={"strimzi.io/cluster": CLUSTER}),
        "spec": {
            "replicas": REPLICAS,
            "roles": ["controller", "broker"],
            "storage": {"type": "jbod", "volumes": [volume]},
            "resources": resources,
        },
    }


def kafka_topics(found: Sequence[Topic]) -> list[Json]:
    return [
        {
            "apiVersion": STRIMZI,
            "kind": "KafkaTopic",
            "metadata": meta(
                topic_resource_name(t.name),
                "topic",
                extra_labels={"strimzi.io/cluster": CLUSTER},
                named=False,
            ),
            "spec": {
                "topicName": t.name,
                "partitions": t.partitions,
                "replicas": REPLICAS,
                "config": dict(t.config),
            },
        }
        for t in found
    ]


def acl_rules(grants: Iterable[Grant]) -> list[Json]:
    """Strimzi's ACL rules for grants: one rule per resource with all its operations."""
    operations: dict[tuple[str, str, str], set[str]] = {}
    for kind, name, pattern, operation in grants:
        if kind not in _RESOURCE or pattern not in _PATTERN:
            raise MbsError(f"no Strimzi ACL for {kind.name} {name} ({pattern.name})")
        key = (_RESOURCE[kind], name, _PATTERN[pattern])
        operations.setdefault(key, set()).add(operation.name.title().replace("_", ""))
    rules = []
    for (kind_name, name, pattern_name), ops in sorted(operations.items()):
        resource = {"type": kind_name, "patternType": pattern_name}
        if kind_name != "cluster":
            resource["name"] = name
        rules.append(
            {"type": "allow", "resource": resource, "operations": sorted(ops), "host": "*"}
        )
    return rules


def kafka_users(contracts: Iterable[Contract], settings: Settings) -> list[Json]:
    """A SCRAM-SHA-512 KafkaUser per principal; Strimzi keeps its password in a Secret of the
    same name (key `password`)."""
    return [
        {
            "apiVersion": STRIMZI,
            "kind": "KafkaUser",
            "metadata": meta(
                principal_name(principal), "principal", extra_labels={"strimzi.io/cluster": CLUSTER}
            ),
            "spec": {
                "authentication": {"type": "scram-sha-512"},
                "authorization": {"type": "simple", "acls": acl_rules(grants)},
            },
        }
        for principal, grants in sorted(ecosystem_grants(contracts, settings).items())
    ]
