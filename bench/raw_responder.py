"""A bare aiokafka service for the baseline: reads requests, writes a reply per request,
no framework, no validation, no journal. `python -m bench.raw_responder TOPIC REPLY_TOPIC`."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from mbs.settings import Settings


async def serve(topic: str, reply_topic: str) -> None:
    bootstrap = Settings().bootstrap
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{topic}",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await consumer.start()
    await producer.start()
    while not consumer.assignment():  # joined: requests sent from now on are read
        await asyncio.sleep(0.1)
        await consumer.getmany(timeout_ms=100)
    print(f"ready {os.getpid()}", flush=True)  # the bench reads this process's CPU
    try:
        async for record in consumer:
            request = json.loads(record.value or b"{}")
            reply = json.dumps({"sku": request.get("sku"), "total": "498.00"}).encode()
            await producer.send(reply_topic, reply, key=record.key, headers=list(record.headers))
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
