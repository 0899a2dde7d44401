"""Local Kafka broker management: `mbs broker up|down|status|logs`."""

from mbs.broker._local import KAFKA_VERSION, BrokerStatus, LocalBroker

__all__ = ["KAFKA_VERSION", "BrokerStatus", "LocalBroker"]
