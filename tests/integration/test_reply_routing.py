"""Replies go to the asking gateway instance only (issue 16): requesters sharing a consumer
group split the reply topic's partitions, each request names one its sender reads
(`mbs-reply-partition`), and the unit kit writes the reply there. Each instance then reads
about its share of the reply records, not all of them.

`pytest -s tests/integration/test_reply_routing.py -k measured` prints the records each
requester's consumer fetched (SCALING.md quotes it)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.kafka import KafkaBroker

from mbs import wire as h
from mbs.kafka import Connection, Requester, ensure_topics
from tests import unit_kit_cases as cases

pytestmark = pytest.mark.kafka
PARTITIONS = 3  # what every reply topic gets
PER_REQUESTER = 60


@contextlib.asynccontextmanager
async def unit(bootstrap: str, uid: str) -> AsyncIterator[cases.Harness]:
    """A unit of the kit (the pricing handler under a unique name) on the real broker."""
    broker = KafkaBroker(bootstrap)
    harness = cases.build_harness(broker, uid)
    contract = harness.contract
    await ensure_topics(
        Connection(bootstrap), [contract.request_topic, contract.reply_topic, contract.dlq_topic]
    )
    async with broker:
        await broker.start()
        yield harness


@contextlib.asynccontextmanager
async def requesters(
    bootstrap: str, topic: str, count: int, group: str | None, *, settle: bool = True
) -> AsyncIterator[list[Requester]]:
    """`count` requesters (as many gateway instances), settled: every partition of `topic`
    owned by one of them (or, without a group, read by each)."""
    started = [
        Requester(Connection(bootstrap), caller=f"gateway-{i}", group=group) for i in range(count)
    ]
    try:
        for requester in started:
            await requester.start([topic])
        if settle:
            await settled(started, group is not None)
        yield started
    finally:
        for requester in started:
            await requester.stop()


async def settled(started: list[Requester], grouped: bool) -> None:
    """Until the group has dealt every partition once and no instance is rebalancing."""
    for _ in range(300):
        readers = [r._replies for r in started if r._replies is not None]
        owned = [p for reader in readers for parts in reader.owned.values() for p in parts]
        calm = all(reader.settled.is_set() for reader in readers)
        if calm and (not grouped or sorted(owned) == list(range(PARTITIONS))):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the group never settled: {[r._replies for r in started]}")


async def ask(requester: Requester, harness: cases.Harness, count: int) -> list[str]:
    """`count` quotes, each under its own journey (the key); the correlation ids replied to."""
    contract = harness.contract
    replies = await asyncio.gather(
        *(
            requester.request(
                contract.request_topic,
                cases.valid(),
                timeout_s=20,
                key=uuid.uuid4().hex.encode(),
                reply_from=contract.reply_topic,
            )
            for _ in range(count)
        )
    )
    assert all(r.error is None for r in replies), [r.error_detail for r in replies]
    assert all(r.asked_partition in (None, r.partition) for r in replies)
    return [r.headers[h.CORRELATION_ID] for r in replies]


async def measure(bootstrap: str, uid: str, count: int, group: str | None) -> list[int]:
    async with unit(bootstrap, uid) as harness:
        topic = harness.contract.reply_topic
        async with requesters(bootstrap, topic, count, group) as started:
            before = [r.records_read for r in started]
            answered = await asyncio.gather(*(ask(r, harness, PER_REQUESTER) for r in started))
            read = [r.records_read - b for r, b in zip(started, before, strict=True)]
    assert [len(a) for a in answered] == [PER_REQUESTER] * count, "every request got its reply"
    total = PER_REQUESTER * count
    print(f"\n{count} requester(s), group {group is not None}: {total} replies, read {read}")
    return read


@pytest.mark.parametrize("count", [1, 3])
async def test_measured_each_gateway_reads_its_share_of_the_replies(
    kafka_bootstrap: str, uid: str, count: int
) -> None:
    read = await measure(kafka_bootstrap, uid, count, group=f"test.{uid}.replies")
    total = PER_REQUESTER * count
    for records in read:
        assert records == pytest.approx(total / count, rel=0.2), (read, total)


async def test_measured_without_a_group_every_instance_reads_every_reply(
    kafka_bootstrap: str, uid: str
) -> None:
    """What the gateway did before: each instance fetched every instance's replies."""
    read = await measure(kafka_bootstrap, uid, 3, group=None)
    assert read == [PER_REQUESTER * 3] * 3


async def test_more_instances_than_partitions_still_get_every_reply(
    kafka_bootstrap: str, uid: str
) -> None:
    """The fourth instance owns no partition: it reads the topic whole and names none."""
    group = f"test.{uid}.replies"
    async with unit(kafka_bootstrap, uid) as harness:
        topic = harness.contract.reply_topic
        async with requesters(kafka_bootstrap, topic, PARTITIONS + 1, group) as started:
            spare = [r for r in started if r._replies is not None and not r._replies.owned]
            assert len(spare) == 1
            for requester in started:
                assert len(await ask(requester, harness, 10)) == 10


async def test_a_rebalance_loses_at_most_replies_in_flight_and_crashes_nothing(
    kafka_bootstrap: str, uid: str
) -> None:
    """A third instance joins while two send: a reply may reach a partition that moved (its
    asker times out; the gateway's engine asks again), and once settled all are answered."""
    group = f"test.{uid}.replies"
    async with unit(kafka_bootstrap, uid) as harness:
        topic, contract = harness.contract.reply_topic, harness.contract
        async with requesters(kafka_bootstrap, topic, 2, group) as first:
            outcomes: list[str] = []

            async def keep_asking(requester: Requester) -> None:
                for _ in range(40):
                    try:
                        await requester.request(
                            contract.request_topic, cases.valid(), timeout_s=3, reply_from=topic
                        )
                        outcomes.append("answered")
                    except TimeoutError:
                        outcomes.append("timed out")

            asking = [asyncio.create_task(keep_asking(r)) for r in first]
            async with requesters(kafka_bootstrap, topic, 1, group, settle=False) as joined:
                await asyncio.gather(*asking)
                await settled([*first, *joined], grouped=True)
                for requester in [*first, *joined]:
                    assert len(await ask(requester, harness, 5)) == 5
    timed_out = outcomes.count("timed out")
    print(f"\na third instance joined: {timed_out} of {len(outcomes)} requests timed out")
    assert timed_out <= 6, outcomes


async def test_a_unit_ignoring_the_header_works_with_a_single_instance(
    kafka_bootstrap: str, uid: str
) -> None:
    """One instance owns every partition, so a reply written by key still reaches it."""
    request_topic, reply_topic = f"t{uid}.ask.v1", f"mbs.replies.t{uid}"
    await ensure_topics(Connection(kafka_bootstrap), [request_topic, reply_topic])
    consumer = AIOKafkaConsumer(
        request_topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"unit-{uid}",
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    await producer.start()

    async def answer_by_key() -> None:
        for _ in range(6):
            record = await consumer.getone()
            kept = [(k, v) for k, v in record.headers if k == h.CORRELATION_ID]
            await producer.send_and_wait(reply_topic, b"{}", key=record.key, headers=kept)

    serving = asyncio.create_task(answer_by_key())
    try:
        async with requesters(kafka_bootstrap, reply_topic, 1, f"test.{uid}.r") as (one,):
            for n in range(6):
                key = f"journey-{n}".encode()
                reply = await one.request(request_topic, b"{}", timeout_s=10, key=key)
                assert reply.body == b"{}"
        await serving
    finally:
        serving.cancel()
        await consumer.stop()
        await producer.stop()
