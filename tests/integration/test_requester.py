"""Request/reply: a reply is accepted only from the provider's own reply topic."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from mbs import wire as h
from mbs.kafka import Connection, Requester, ensure_topics

pytestmark = pytest.mark.kafka


async def test_a_forged_reply_on_another_units_topic_never_reaches_the_caller(
    kafka_bootstrap: str, uid: str
) -> None:
    request_topic, genuine, forged = f"t{uid}.ask.v1", f"mbs.replies.t{uid}", f"mbs.replies.x{uid}"
    await ensure_topics(Connection(kafka_bootstrap), [request_topic, genuine, forged])
    requester = Requester(Connection(kafka_bootstrap), caller="test")
    await requester.start([genuine, forged])
    consumer = AIOKafkaConsumer(
        request_topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"unit-{uid}",
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    await producer.start()

    async def answer(reply_topic: str) -> None:
        record = await consumer.getone()
        headers = [(k, v) for k, v in record.headers if k == h.CORRELATION_ID]
        await producer.send_and_wait(
            reply_topic,
            b'{"who": "%s"}' % reply_topic.encode(),
            headers=[*headers, (h.UNIT, b"someone")],
        )

    try:
        forger = asyncio.create_task(answer(forged))
        with pytest.raises(TimeoutError):
            await requester.request(request_topic, b"{}", timeout_s=3, reply_from=genuine)
        await forger
        honest = asyncio.create_task(answer(genuine))
        reply = await requester.request(request_topic, b"{}", timeout_s=10, reply_from=genuine)
        await honest
    finally:
        await consumer.stop()
        await producer.stop()
        await requester.stop()
    assert genuine.encode() in reply.body
