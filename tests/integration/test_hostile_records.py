"""Hostile records on the real broker: whatever lands in the registry, the certifications or
the journey definitions, readers keep what they can read and the rest lands in
`<topic>.dlq` with its reason and where it came from."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy
from prometheus_client import REGISTRY

import contracts
from gateway.catalog import Catalog
from gateway.definition import load_all
from gateway.definition.store import DEFS_CONFIG, DefinitionStore
from mbs.contract import Certifications, Registry
from mbs.contract.certification import certification_key, fingerprint
from mbs.kafka import COMPACTED, Connection, ensure_topics

pytestmark = pytest.mark.kafka


class _RawName(str):
    """A header name whose bytes are not UTF-8 (aiokafka encodes names with `.encode`)."""

    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfe"


async def produce_undecodable(
    producer: AIOKafkaProducer, topic: str, *, partition: int = 0, key: bytes = b"k"
) -> None:
    """A record whose header name is not UTF-8: a Java or librdkafka client can write one,
    aiokafka raises on it at every fetch. Built with aiokafka's pure-Python batch builder,
    the only one that lets a name through unencoded."""
    batch = producer.create_batch()
    batch._builder = _DefaultRecordBatchBuilderPy(  # the C builder insists on real text
        2,
        0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=0,
        batch_size=16384,
    )
    batch.append(key=key, value=b"v", timestamp=None, headers=[(_RawName("x"), b"x")])
    await (await producer.send_batch(batch, topic, partition=partition))


async def quarantined(
    bootstrap: str, topic: str, count: int, timeout_s: float = 30.0
) -> dict[str, tuple[bytes, dict[str, bytes]]]:
    """The newest copy per key in `<topic>.dlq`, once there are `count` keys."""
    await wait_created(bootstrap, f"{topic}.dlq", timeout_s)  # by the copier, as it wants it
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        fetch_max_wait_ms=50,
        auto_offset_reset="earliest",  # the copier may create the topic after we look
    )
    await consumer.start()
    found: dict[str, tuple[bytes, dict[str, bytes]]] = {}
    try:
        tp = TopicPartition(f"{topic}.dlq", 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        deadline = time.monotonic() + timeout_s
        while len(found) < count and time.monotonic() < deadline:
            for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                found[record.key.decode()] = (record.value, dict(record.headers))
    finally:
        await consumer.stop()
    assert len(found) >= count, f"{topic}.dlq holds {sorted(found)}, wanted {count} copies"
    return found


async def wait_created(bootstrap: str, topic: str, timeout_s: float) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while topic not in await admin.list_topics():
            assert time.monotonic() < deadline, f"nobody created {topic}"
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def cleanup_policy(bootstrap: str, topic: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
        entries = described.resources[0][4]
        return str(next(e[1] for e in entries if e[0] == "cleanup.policy"))
    finally:
        await admin.close()


def reasons(found: dict[str, tuple[bytes, dict[str, bytes]]]) -> dict[str, str]:
    """`<partition>:<offset>` -> reason, checking each copy names its source."""
    out = {}
    for key, (_, headers) in found.items():
        partition, offset = key.split(":")
        assert headers["mbs-source-partition"].decode() == partition
        assert headers["mbs-source-offset"].decode() == offset
        assert headers["mbs-error-detail"]
        out[key] = headers["mbs-error"].decode()
    return out


async def test_the_registry_keeps_good_contracts_and_quarantines_the_rest(
    kafka_bootstrap: str, uid: str
) -> None:
    topic = f"test.contracts.{uid}"
    await ensure_topics(Connection(kafka_bootstrap), [topic], partitions=1, config=COMPACTED)
    connection = Connection(kafka_bootstrap)
    good = contracts.all_contracts()[:3]
    await Registry(connection, topic=topic).register(good)  # offsets 0..2
    wrong_field = {**good[0].model_dump(mode="json"), "version": "1.x", "colour": "red"}
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in [
            (b"random", os.urandom(200)),  # 3
            (b"list", b"[1,2,3]"),  # 4
            (good[0].key.encode(), json.dumps(wrong_field).encode()),  # 5
            (b"\xc3\x28-not-utf8", good[1].model_dump_json().encode()),  # 6
            (b"huge", b"[" + b"1," * 400_000 + b"1]"),  # 7
        ]:
            await producer.send_and_wait(topic, value, key=key, partition=0)
        await produce_undecodable(producer, topic)  # 8
        late = contracts.all_contracts()[3]
        await producer.send_and_wait(
            topic, late.model_dump_json().encode(), key=late.key.encode(), partition=0
        )
    finally:
        await producer.stop()
    before = REGISTRY.get_sample_value(
        "mbs_records_quarantined_total", {"topic": topic, "reason": "schema_invalid"}
    )
    view = await Registry(connection, topic=topic).sync()
    assert sorted(view.by_key) == sorted(c.key for c in contracts.all_contracts()[:4])
    kept = view.by_key[good[0].key].model_dump()
    assert kept == good[0].model_dump(), "a bad record under a good key hides nothing"
    found = reasons(await quarantined(kafka_bootstrap, topic, 6))
    assert found == {
        "0:3": "not_json",
        "0:4": "schema_invalid",
        "0:5": "schema_invalid",
        "0:6": "unreadable",
        "0:7": "schema_invalid",
        "0:8": "unreadable",
    }
    assert (before or 0) == 0
    assert (
        REGISTRY.get_sample_value(
            "mbs_records_quarantined_total", {"topic": topic, "reason": "schema_invalid"}
        )
        == 3
    )
    assert await cleanup_policy(kafka_bootstrap, f"{topic}.dlq") == "compact"
    again = await Registry(connection, topic=topic).sync()  # another process, same records
    assert sorted(again.by_key) == sorted(view.by_key)
    copies = await quarantined(kafka_bootstrap, topic, 6)
    assert copies["0:6"][1]["mbs-source-key"] == b"\xc3\x28-not-utf8"
    assert copies["0:3"][1]["mbs-source-topic"] == topic.encode()


async def test_certifications_never_trust_a_record_that_is_not_one(
    kafka_bootstrap: str, uid: str
) -> None:
    topic = f"test.certifications.{uid}"
    await ensure_topics(Connection(kafka_bootstrap), [topic], partitions=1, config=COMPACTED)
    contract = contracts.all_contracts()[0]
    key = certification_key(contract).encode()
    good = {"passed": True, "contract_sha256": fingerprint(contract), "samples": 10}
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for value in [
            b"[1]",
            b'{"passed": "x", "contract_sha256": "y"}',
            json.dumps(good).encode(),
            os.urandom(50),
            b"null",
        ]:
            await producer.send_and_wait(topic, value, key=key, partition=0)
        await producer.send_and_wait(topic, b"{}", key=b"\xff", partition=0)
        await produce_undecodable(producer, topic, key=key)
    finally:
        await producer.stop()
    certifications = Certifications(Connection(kafka_bootstrap), topic)
    await certifications.table.catch_up()
    assert certifications.records == {key.decode(): good}
    found = reasons(await quarantined(kafka_bootstrap, topic, 6))
    assert found == {
        "0:0": "schema_invalid",
        "0:1": "schema_invalid",
        "0:3": "not_json",
        "0:4": "schema_invalid",
        "0:5": "unreadable",
        "0:6": "unreadable",
    }


async def test_a_definition_the_catalog_refuses_never_goes_live(
    kafka_bootstrap: str, uid: str
) -> None:
    topic = f"test.journeys.defs.{uid}"
    catalog = Catalog(contracts.all_contracts())
    shipped = load_all(catalog)["order-to-delivery"]
    unknown = shipped.model_dump(mode="json") | {"version": 2}
    unknown["steps"][-1]["capability"] = "nobody.offers"
    await ensure_topics(Connection(kafka_bootstrap), [topic], partitions=1, config=DEFS_CONFIG)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    store = DefinitionStore(Connection(kafka_bootstrap), topic, catalog)
    try:
        await producer.send_and_wait(
            topic, shipped.model_dump_json().encode(), key=b"order-to-delivery@1"
        )
        await producer.send_and_wait(
            topic, json.dumps(unknown).encode(), key=b"order-to-delivery@2"
        )
        await producer.send_and_wait(topic, os.urandom(64), key=b"order-to-delivery@3")
        await store.start()
        assert store.latest("order-to-delivery") == shipped
        assert store.names() == ["order-to-delivery"]
        # while followed: refused again, and a good version still goes live
        unknown["version"] = 3
        await producer.send_and_wait(
            topic, json.dumps(unknown).encode(), key=b"order-to-delivery@3"
        )
        await store.put(shipped.model_copy(update={"version": 4}))
        live = store.latest("order-to-delivery")
        assert live is not None
        assert live.version == 4
    finally:
        await store.stop()
        await producer.stop()
    found = await quarantined(kafka_bootstrap, topic, 3)
    assert reasons(found) == {"0:1": "refused", "0:2": "not_json", "0:3": "refused"}
    detail = found["0:1"][1]["mbs-error-detail"].decode()
    assert "unknown capability 'nobody.offers'" in detail
