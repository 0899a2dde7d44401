"""Helpers for testing units and the ecosystem: handlers under a shadow request, a unit
asked over FastStream's in-memory Kafka, and child processes of `mbs run ...`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from faststream.kafka import KafkaBroker, KafkaMessage, TestKafkaBroker
from pydantic import BaseModel

from mbs import wire
from mbs.cli.commands import configure_logging
from mbs.cli.processes import Process, ProcessGroup, free_port, wait_http_ok
from mbs.contract.model import Contract
from mbs.unit.api import Unit
from mbs.unit.context import serving_dry_run


@contextmanager
def shadow_request() -> Iterator[None]:
    """Call handlers as the kit does for a shadow request: `dry_run()` is True inside."""
    with serving_dry_run():
        yield


async def ask(
    unit: Unit, contract: Contract, request: BaseModel, *, timeout_s: float = 10.0
) -> tuple[bytes, dict[str, str]]:
    """Send one request to `unit` on an in-memory broker; its reply's body and headers."""
    broker = KafkaBroker()
    unit.attach(broker)
    replies: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()

    @broker.subscriber(contract.reply_topic, group_id=f"test-{uuid.uuid4().hex}")
    async def capture(msg: KafkaMessage) -> None:
        await replies.put((msg.body, {k: str(v) for k, v in msg.headers.items()}))

    correlation = uuid.uuid4().hex
    async with TestKafkaBroker(broker):
        await broker.publish(
            request.model_dump_json().encode(),
            contract.request_topic,
            headers={wire.MESSAGE_ID: uuid.uuid4().hex, wire.CORRELATION_ID: correlation},
        )
        body, headers = await asyncio.wait_for(replies.get(), timeout=timeout_s)
    assert headers[wire.CORRELATION_ID] == correlation
    return body, headers


__all__ = [
    "Process",
    "ProcessGroup",
    "ask",
    "configure_logging",
    "free_port",
    "shadow_request",
    "wait_http_ok",
]
