"""The local Kafka broker (`mbs broker up|down|status|logs`), its secure mode (SCRAM
principals and ACLs), and provisioning the ecosystem and partners on it."""

from mbs.broker.local import KAFKA_VERSION, BrokerStatus, LocalBroker
from mbs.broker.security import Credentials

__all__ = ["KAFKA_VERSION", "BrokerStatus", "Credentials", "LocalBroker"]
