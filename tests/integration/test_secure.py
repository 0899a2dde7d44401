"""Secure mode on a real broker (SASL/SCRAM, StandardAuthorizer): every principal is isolated."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError
from confluent_kafka import TopicPartition as KafkaTopicPartition

from mbs import wire as h
from mbs.broker import Credentials, LocalBroker
from mbs.settings import Settings
from mbs.testing import ProcessGroup, free_port

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalBroker, Path]]:
    home = tmp_path_factory.mktemp("secure-home")
    port = free_port(2)  # the broker and its controller
    env = {k: v for k, v in os.environ.items() if not k.startswith("MBS_KAFKA")}
    env |= {"MBS_HOME": str(home), "MBS_BROKER_PORT": str(port)}
    up = subprocess.run(
        [sys.executable, "-m", "mbs", "broker", "up", "--secure"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    broker = LocalBroker(Settings(home=home, broker_port=port), secure=True)
    try:
        assert up.returncode == 0, up.stderr
        assert "provisioned" in up.stderr
        yield broker, broker.run_dir / "credentials"
    finally:
        broker.down()


def options(broker: LocalBroker, credentials: Credentials | None) -> dict[str, Any]:
    found: dict[str, Any] = {"bootstrap_servers": broker.address, "request_timeout_ms": 10_000}
    if credentials is not None:
        found |= {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_plain_username": credentials.username,
            "sasl_plain_password": credentials.password,
        }
    return found


async def write(broker: LocalBroker, who: Credentials | None, topic: str) -> None:
    producer = AIOKafkaProducer(**options(broker, who))
    try:
        await producer.start()
        await asyncio.wait_for(producer.send_and_wait(topic, b"{}"), 15)
    finally:
        await producer.stop()


async def read(broker: LocalBroker, who: Credentials, topic: str) -> None:
    """Fetch from the topic's first partition; TopicAuthorizationFailedError when refused."""
    await asyncio.to_thread(_read, broker, who, topic)


def _read(broker: LocalBroker, who: Credentials, topic: str) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": broker.address,
            "group.id": f"mbs.unit.{who.username}.probe",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": who.username,
            "sasl.password": who.password,
            "enable.auto.commit": False,
        }
    )
    try:
        described = consumer.list_topics(topic, timeout=10).topics[topic].error
        if described is not None and described.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            raise TopicAuthorizationFailedError(topic)  # may not even see it, let alone read
        consumer.assign([KafkaTopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is not None:
                if message.error().code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                    raise TopicAuthorizationFailedError(topic)
                if message.error().code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(f"unexpected error reading {topic}: {message.error()}")
            if message is not None:
                return
        return  # nothing to read, and no refusal within 10 s: reading is allowed
    finally:
        consumer.close()


def creds(folder: Path, name: str) -> Credentials:
    return Credentials.load(folder, name)


async def test_a_partner_reads_and_writes_only_its_own_topics(
    secure: tuple[LocalBroker, Path],
) -> None:
    broker, folder = secure
    fastship = creds(folder, "fastship")
    await write(broker, fastship, "mbs.replies.fastship")  # its own reply topic
    await read(broker, fastship, "shipping.book.v1.fastship")  # its own requests
    with pytest.raises(TopicAuthorizationFailedError):
        await read(broker, fastship, "payments.charge.v2")
    with pytest.raises(TopicAuthorizationFailedError):
        await write(broker, fastship, "mbs.replies.payments")  # no forged replies
    with pytest.raises(TopicAuthorizationFailedError):
        await write(broker, fastship, "mbs.contracts")


async def test_unauthenticated_and_wrong_password_are_refused(
    secure: tuple[LocalBroker, Path], caplog: pytest.LogCaptureFixture
) -> None:
    broker, _ = secure
    with pytest.raises(KafkaConnectionError):
        await write(broker, None, "mbs.replies.fastship")
    with pytest.raises(KafkaConnectionError):
        await write(broker, Credentials("fastship", "not-the-password"), "mbs.replies.fastship")
    assert "SaslAuthenticationFailed" in caplog.text


async def test_a_unit_process_serves_the_gateway_principal_under_acls(
    secure: tuple[LocalBroker, Path], tmp_path: Path
) -> None:
    broker, folder = secure
    fastship = creds(folder, "fastship")
    group = ProcessGroup(
        tmp_path,
        env={"MBS_KAFKA_BOOTSTRAP": broker.address, "MBS_UNIT_PORT": "0", **fastship.env()},
    )
    try:
        group.start("fastship", "run", "unit", "fastship")
        reply = await _request_as_gateway(broker, creds(folder, "gateway"))
    finally:
        group.stop()
    assert reply["carrier"] == "FastShip"


async def _request_as_gateway(broker: LocalBroker, gateway: Credentials) -> dict[str, Any]:
    correlation = uuid.uuid4().hex
    consumer = AIOKafkaConsumer(**options(broker, gateway), group_id=None)
    producer = AIOKafkaProducer(**options(broker, gateway))
    await consumer.start()
    await producer.start()
    try:
        parts = [TopicPartition("mbs.replies.fastship", p) for p in range(3)]
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        for tp in parts:
            await consumer.position(tp)
        body = {"order_id": "sec-1", "sku": "grinder-c40", "quantity": 1, "postcode": "10115"}
        await producer.send_and_wait(
            "shipping.book.v1.fastship",
            json.dumps(body).encode(),
            headers=[
                (h.MESSAGE_ID, uuid.uuid4().hex.encode()),
                (h.CORRELATION_ID, correlation.encode()),
            ],
        )
        async with asyncio.timeout(60):
            async for record in consumer:
                if dict(record.headers).get(h.CORRELATION_ID) == correlation.encode():
                    found: dict[str, Any] = json.loads(record.value or b"{}")
                    return found
    finally:
        await consumer.stop()
        await producer.stop()
    raise AssertionError("no reply")


def test_onboarding_a_new_partner_with_one_command(
    secure: tuple[LocalBroker, Path], tmp_path: Path
) -> None:
    broker, _ = secure
    raw = json.loads(Path("contracts/partners/fastship.json").read_text())
    for contract in raw:
        contract["unit"], contract["owner"] = "shipnow", "ShipNow Ltd"
    path = tmp_path / "shipnow.json"
    path.write_text(json.dumps(raw))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MBS_KAFKA")}
    env |= {"MBS_HOME": str(broker.run_dir.parent), "MBS_BROKER_PORT": str(broker.port)}
    added = subprocess.run(
        [sys.executable, "-m", "mbs", "partners", "add", "shipnow", "--contract", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    lines = dict(line.split("=", 1) for line in added.stdout.splitlines() if "=" in line)
    shipnow = Credentials(lines["MBS_KAFKA_USERNAME"], lines["MBS_KAFKA_PASSWORD"])
    assert shipnow.username == "shipnow"
    asyncio.run(read(broker, shipnow, "shipping.book.v1.shipnow"))
    asyncio.run(write(broker, shipnow, "mbs.replies.shipnow"))
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(read(broker, shipnow, "shipping.book.v1.fastship"))
