"""`mbs run gateway` refuses to start in one clear line (issue 17): no broker, or an HTTP port
already taken, which is found before anything joins a consumer group."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient

from mbs.testing import free_port
from tests.conftest import private_topics

pytestmark = pytest.mark.kafka


def gateway(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mbs", "run", "gateway", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        yield squatter.getsockname()[1]


def test_no_broker_is_one_line_and_exit_3() -> None:
    shown = gateway({"MBS_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}, "--port", str(free_port()))
    assert shown.returncode == 3, shown.stderr
    assert "Traceback" not in shown.stderr
    [error] = [line for line in shown.stderr.splitlines() if line.startswith("error:")]
    assert "cannot reach Kafka" in error
    assert "mbs broker up" in error
    assert len(shown.stderr.splitlines()) <= 3, shown.stderr


def test_a_taken_port_is_refused_before_kafka_is_asked(taken_port: int) -> None:
    shown = gateway({"MBS_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}, "--port", str(taken_port))
    assert shown.returncode == 3, shown.stderr
    assert f"cannot listen on 127.0.0.1:{taken_port}" in shown.stderr
    assert "Kafka" not in shown.stderr, "the port is checked before Kafka is reached"


def test_a_taken_port_never_joins_the_gateway_group(
    kafka_bootstrap: str, uid: str, taken_port: int
) -> None:
    """With the broker up: the second gateway fails without taking partitions from the first
    (its consumer group never sees a member)."""
    topics = private_topics(uid)
    env = {"MBS_KAFKA_BOOTSTRAP": kafka_bootstrap, "MBS_GATEWAY_PORT": str(taken_port), **topics}
    shown = gateway(env)
    assert shown.returncode == 3, shown.stderr
    assert "cannot listen on" in shown.stderr
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    groups = admin.list_consumer_groups().result(30)
    assert topics["MBS_GATEWAY_GROUP"] not in {g.group_id for g in groups.valid}
