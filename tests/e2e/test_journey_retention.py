"""The journey log does not grow without bound: a finished run is answered for
`MBS_JOURNEY_RETENTION_S`, then deleted by its partition's owner, and Kafka's cleaner drops
its records."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from gateway.runlog import STATE_CONFIG, STATE_PARTITIONS
from tests.e2e.ecosystem import CALLER, Ecosystem, order, submit, wait_all

pytestmark = pytest.mark.kafka
RETENTION_S = 3


async def records_of(bootstrap: str, topic: str, run_ids: set[str]) -> dict[str, list[bool]]:
    """For each run, its records left in the log, in order: True a state, False a tombstone."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    found: dict[str, list[bool]] = {run_id: [] for run_id in run_ids}
    try:
        parts = [TopicPartition(topic, p) for p in range(STATE_PARTITIONS)]
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        for tp, first in (await consumer.beginning_offsets(parts)).items():
            consumer.seek(tp, first)
        for tp in parts:
            while await consumer.position(tp) < ends[tp]:
                for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                    for record in records:
                        key = (record.key or b"").decode()
                        if key in found:
                            found[key].append(record.value is not None)
    finally:
        await consumer.stop()
    return found


def clean_soon(bootstrap: str, topic: str) -> None:
    """Let Kafka's cleaner reach the topic within seconds (by default it waits for the
    segment to roll hourly and for a minute of compaction lag)."""
    config = {
        **STATE_CONFIG,
        "segment.ms": "1000",
        "min.compaction.lag.ms": "0",
        "delete.retention.ms": "1000",
        "min.cleanable.dirty.ratio": "0.01",
    }
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.alter_configs([ConfigResource("topic", topic, set_config=config)]).values():
        future.result(30)


async def roll_segments(bootstrap: str, topic: str) -> None:
    """An append to every partition after segment.ms closes the segment holding the runs'
    records (the cleaner never touches the open one); a tombstone of nothing is harmless."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition in range(STATE_PARTITIONS):
            key = f"roll-{uuid.uuid4().hex}".encode()
            await producer.send_and_wait(topic, None, key=key, partition=partition)
    finally:
        await producer.stop()


async def test_finished_runs_leave_the_journey_log_after_the_retention(
    fresh: Ecosystem, kafka_bootstrap: str
) -> None:
    assert fresh.group is not None
    fresh.group.env = {**fresh.group.env, "MBS_JOURNEY_RETENTION_S": str(RETENTION_S)}
    url = fresh.start_gateway()
    topic = fresh.topics["MBS_JOURNEYS_TOPIC"]
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        locations = [await submit(client, "order-to-delivery", order(i)) for i in range(12)]
        runs = await wait_all(client, locations, timeout_s=90, settled=True)
        assert {run["status"] for run in runs.values()} == {"completed"}
        run_ids = {run["run_id"] for run in runs.values()}
        before = await records_of(kafka_bootstrap, topic, run_ids)
        assert all(before[r] and before[r][-1] for r in run_ids), "a finished run was missing"

        deadline = time.monotonic() + RETENTION_S + 30
        gone: set[str] = set()
        while len(gone) < len(locations) and time.monotonic() < deadline:
            for location in set(locations) - gone:
                if (await client.get(location, headers=CALLER)).status_code == 404:
                    gone.add(location)
            await asyncio.sleep(0.5)
        assert len(gone) == len(locations), f"{len(locations) - len(gone)} runs still answered"

    deleted = await records_of(kafka_bootstrap, topic, run_ids)
    assert all(deleted[r][-1] is False for r in run_ids), "a run was not deleted in the log"

    clean_soon(kafka_bootstrap, topic)
    await asyncio.sleep(1.5)
    await roll_segments(kafka_bootstrap, topic)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        left = await records_of(kafka_bootstrap, topic, run_ids)
        states = sum(sum(kinds) for kinds in left.values())
        if states == 0:
            break
        await asyncio.sleep(3)
    written = sum(len(kinds) for kinds in before.values())
    assert states == 0, f"{states} of {written} states of deleted runs still in the log"
