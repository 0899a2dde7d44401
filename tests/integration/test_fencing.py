"""A gateway that lost a journey-log partition cannot write it: the zombie writer, on Kafka.

The invariant: once a new owner has taken a partition (fenced it), nothing the old owner
writes afterwards is ever read by a committed reader, and the old owner learns at its first
write that it must stop. Without fencing, both writers' records land (the check fails)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.fencing import FencedWriter, NotOwner
from mbs.kafka import Connection, ensure_topics

pytestmark = pytest.mark.kafka


async def committed(bootstrap: str, topic: str, partition: int) -> list[bytes]:
    """Every record a read_committed reader finds in the partition, in order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes] = []
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                values += [r.value for r in records]
        return values
    finally:
        await consumer.stop()


async def test_the_old_owner_is_fenced_once_a_new_one_takes_the_partition(
    kafka_bootstrap: str, uid: str
) -> None:
    topic, group = f"t{uid}.journeys.state", f"t{uid}.gateway"
    connection = Connection(kafka_bootstrap)
    await ensure_topics(connection, [topic], partitions=1)
    old = FencedWriter(connection, topic, group, 0)
    new = FencedWriter(connection, topic, group, 0)
    await old.start()
    try:
        await asyncio.gather(*(old.write(b"run", b"old-%d" % i) for i in range(5)))
        await new.start()  # the partition moves: the old owner has not noticed
        with pytest.raises(NotOwner, match="fenced"):
            await old.write(b"run", b"zombie")
        with pytest.raises(NotOwner):  # and stays refused
            await old.write(b"run", b"zombie again")
        await new.write(b"run", b"new-0")
    finally:
        await old.close()
        await new.close()
    assert await committed(kafka_bootstrap, topic, 0) == [
        *(b"old-%d" % i for i in range(5)),
        b"new-0",
    ]


async def test_a_busy_partition_commits_many_saves_per_transaction(
    kafka_bootstrap: str, uid: str
) -> None:
    topic = f"t{uid}.journeys.state"
    connection = Connection(kafka_bootstrap)
    await ensure_topics(connection, [topic], partitions=1)
    writer = FencedWriter(connection, topic, f"t{uid}.gateway", 0)
    await writer.start()
    try:
        await asyncio.gather(*(writer.write(b"k%d" % i, b"v%d" % i) for i in range(200)))
    finally:
        await writer.close()
    values = await committed(kafka_bootstrap, topic, 0)
    assert sorted(values) == sorted(b"v%d" % i for i in range(200))
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    try:
        end = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()
    markers = end - len(values)  # one commit marker per transaction
    assert 1 <= markers < 50, f"{markers} transactions for 200 saves: saves were not grouped"


async def test_taking_a_partition_ends_the_dead_owners_open_transaction_at_once(
    kafka_bootstrap: str, uid: str
) -> None:
    """The new owner reads where the log ends right after taking the partition: a transaction
    the old owner left open (killed mid-save) must not hide the end from it."""
    topic, group = f"t{uid}.journeys.state", f"t{uid}.gateway"
    connection = Connection(kafka_bootstrap)
    await ensure_topics(connection, [topic], partitions=1)
    dead = FencedWriter(connection, topic, group, 0)
    await dead.start()
    await dead.write(b"run", b"committed")
    await dead.producer.begin_transaction()  # killed after sending, before committing
    await (await dead.producer.send(topic, b"never committed", key=b"run", partition=0))
    new = FencedWriter(connection, topic, group, 0)
    await new.start()
    tp = TopicPartition(topic, 0)
    reader = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, isolation_level="read_committed")
    everything = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await reader.start()
    await everything.start()
    try:
        stable_end = (await reader.end_offsets([tp]))[tp]
        written_end = (await everything.end_offsets([tp]))[tp]
    finally:
        await reader.stop()
        await everything.stop()
        await new.close()
        await dead.producer.stop()
    # the open transaction is aborted: nothing written is left undecided
    assert stable_end == written_end == 4, (stable_end, written_end)
    assert await committed(kafka_bootstrap, topic, 0) == [b"committed"]
