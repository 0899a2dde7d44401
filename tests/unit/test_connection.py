"""A process reaches a secure cluster with the SASL mechanism its users have."""

from __future__ import annotations

import pytest
from faststream.security import SASLScram256, SASLScram512

from mbs.kafka import Connection
from mbs.settings import Settings


@pytest.mark.parametrize(
    ("mechanism", "security"), [("SCRAM-SHA-256", SASLScram256), ("SCRAM-SHA-512", SASLScram512)]
)
def test_the_mechanism_of_the_settings_reaches_every_client(mechanism: str, security: type) -> None:
    settings = Settings(
        kafka_bootstrap="k:9092", kafka_username="fastship", kafka_sasl_mechanism=mechanism
    )
    connection = Connection.from_settings(settings)
    assert connection.options()["sasl_mechanism"] == mechanism
    assert isinstance(connection.broker_security(), security)


def test_a_plain_connection_has_no_sasl() -> None:
    assert "sasl_mechanism" not in Connection("k:9092").options()


def test_a_bootstrap_list_is_every_broker() -> None:
    assert Connection("a:9092, b:9094,c:9096").servers() == ["a:9092", "b:9094", "c:9096"]
