"""Unit throughput: the kit versus a bare FastStream subscriber, same broker, same run.

Both sides consume N pre-produced requests and reply on a topic; we time from the first
request produced to the last reply seen. The bare subscriber does what a hand-written service
would do (parse JSON, price, publish a reply); the kit adds validation, de-duplication
(a SQLite transaction per request in the unit's store, a file in a temporary directory here),
cost headers and metrics.

    .venv/bin/python bench/unit_throughput.py --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage

from contracts.pricing import QUOTE, QuoteRequest
from mbs import Binding, Unit, UnitStore
from mbs import wire as h
from mbs.kafka import Connection, ensure_topics
from mbs.settings import Settings
from services.pricing.handlers import quote
from tests.kafka_probe import Probe


def kit_contract(uid: str) -> Any:
    contract = QUOTE.model_copy(update={"unit": f"b{uid}", "capability": f"b{uid}.quote"})
    contract._request_model, contract._reply_model = QUOTE.request_model, QUOTE.reply_model
    return contract


def wire_kit(broker: KafkaBroker, bootstrap: str, uid: str, concurrency: int) -> tuple[str, str]:
    contract = kit_contract(uid)
    unit = Unit(contract.unit, [Binding(contract, quote)], concurrency=concurrency)
    state_dir = Path(tempfile.mkdtemp(prefix="mbs-bench-"))
    unit.attach(broker, UnitStore.open(state_dir / f"{unit.name}.sqlite3"))
    return contract.request_topic, contract.reply_topic


def wire_bare(broker: KafkaBroker, bootstrap: str, uid: str, concurrency: int) -> tuple[str, str]:
    request_topic, reply_topic = f"bare{uid}.quote.v1", f"mbs.replies.bare{uid}"

    @broker.subscriber(
        request_topic,
        group_id=f"bare-{uid}",
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK,
        max_workers=concurrency,
        fetch_max_wait_ms=50,
    )
    async def serve(msg: KafkaMessage) -> None:
        reply = await quote(QuoteRequest.model_validate_json(msg.body))
        await broker.publish(
            reply.model_dump_json().encode(),
            reply_topic,
            headers={h.CORRELATION_ID: msg.headers[h.CORRELATION_ID]},
        )

    return request_topic, reply_topic


async def run(
    name: str, wire: Callable[..., tuple[str, str]], bootstrap: str, n: int, concurrency: int
) -> float:
    uid = uuid.uuid4().hex[:8]
    broker = KafkaBroker(bootstrap, logger=None)
    request_topic, reply_topic = wire(broker, bootstrap, uid, concurrency)
    await ensure_topics(Connection(bootstrap), [request_topic, reply_topic, f"{request_topic}.dlq"])
    async with Probe(bootstrap, reply_topic) as probe, broker:
        await broker.start()
        await asyncio.sleep(3)  # group join
        body = {"sku": "grinder-c40", "quantity": 2}
        started = time.perf_counter()
        sent = [await probe.send(request_topic, body) for _ in range(n)]
        await probe.flush()
        await probe.wait_for(sent, 300)
        elapsed = time.perf_counter() - started
    rate = n / elapsed
    print(f"{name:5s} {n} requests, concurrency {concurrency}: {elapsed:.2f}s = {rate:.0f} req/s")
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=3)
    args = parser.parse_args()
    bootstrap = Settings().bootstrap
    results: dict[str, float] = {}
    for name, wire in (("bare", wire_bare), ("kit", wire_kit)):
        results[name] = await run(name, wire, bootstrap, args.requests, args.concurrency)
    print(f"kit / bare = {results['kit'] / results['bare']:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
