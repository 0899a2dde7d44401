"""The local Kafka broker (`mbs broker up|down|status|logs`), its secure mode (SCRAM
principals and ACLs), a local N-node cluster (`--nodes 3`), and provisioning the ecosystem
and partners on it."""

from mbs.broker.cluster import LocalCluster, NodeStatus
from mbs.broker.jars import KAFKA_VERSION
from mbs.broker.local import MAX_PORT, MIN_PORT, BrokerStatus, LocalBroker
from mbs.broker.security import Credentials

__all__ = [
    "KAFKA_VERSION",
    "MAX_PORT",
    "MIN_PORT",
    "BrokerStatus",
    "Credentials",
    "LocalBroker",
    "LocalCluster",
    "NodeStatus",
]
