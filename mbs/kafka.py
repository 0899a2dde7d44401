"""Connection options every Kafka client of the platform uses: plain on a dev broker,
SASL/SCRAM-SHA-256 with the process's own principal in secure mode (MBS_KAFKA_USERNAME)."""

from __future__ import annotations

from typing import Any

from faststream.security import BaseSecurity, SASLScram256

from mbs.settings import get_settings

MECHANISM = "SCRAM-SHA-256"


def client_options() -> dict[str, Any]:
    """Keyword arguments for aiokafka producers, consumers and admin clients."""
    settings = get_settings()
    if not settings.kafka_username:
        return {}
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": MECHANISM,
        "sasl_plain_username": settings.kafka_username,
        "sasl_plain_password": settings.kafka_password,
    }


def broker_security() -> BaseSecurity | None:
    """The same, for a FastStream KafkaBroker."""
    settings = get_settings()
    if not settings.kafka_username:
        return None
    return SASLScram256(settings.kafka_username, settings.kafka_password, use_ssl=False)
