"""A plain aiokafka client for tests: sends requests and records every reply it sees."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from mbs import wire as h
from mbs.kafka import Connection, ensure_topics


@dataclass
class Probe:
    """Produces requests to a unit and collects all replies on its reply topic."""

    bootstrap: str
    reply_topic: str
    replies: dict[str, list[tuple[bytes, dict[str, str]]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    _producer: AIOKafkaProducer | None = None
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Probe:
        await ensure_topics(Connection(self.bootstrap), [self.reply_topic])
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, fetch_max_wait_ms=20
        )
        await self._producer.start()
        await self._consumer.start()
        parts = [
            TopicPartition(self.reply_topic, p)
            for p in self._consumer.partitions_for_topic(self.reply_topic) or {0, 1, 2}
        ]
        self._consumer.assign(parts)
        await self._consumer.seek_to_end(*parts)
        for tp in parts:
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        assert self._consumer is not None
        assert self._producer is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._consumer.stop()
        await self._producer.stop()

    async def _collect(self) -> None:
        assert self._consumer
        async for record in self._consumer:
            hdrs = {k: v.decode() for k, v in record.headers or ()}
            self.replies[hdrs.get(h.CORRELATION_ID, "")].append((record.value or b"", hdrs))

    async def send(
        self, topic: str, body: dict[str, Any], *, message_id: str | None = None, **extra: str
    ) -> str:
        return await self._send(topic, None, body, message_id, extra)

    async def send_to_partition(
        self, topic: str, partition: int, body: dict[str, Any], *, message_id: str
    ) -> str:
        """Like `send`, to one partition: a repeat that must reach another consumer."""
        return await self._send(topic, partition, body, message_id, {})

    async def _send(
        self,
        topic: str,
        partition: int | None,
        body: dict[str, Any],
        message_id: str | None,
        extra: dict[str, str],
    ) -> str:
        assert self._producer
        correlation = uuid.uuid4().hex
        hdrs = {
            h.MESSAGE_ID: message_id or uuid.uuid4().hex,
            h.CORRELATION_ID: correlation,
            **extra,
        }
        await self._producer.send(
            topic,
            json.dumps(body).encode(),
            partition=partition,
            headers=[(k, v.encode()) for k, v in hdrs.items()],
        )
        return correlation

    async def flush(self) -> None:
        assert self._producer
        await self._producer.flush()

    async def wait_for(self, correlations: list[str], timeout_s: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while any(c not in self.replies for c in correlations):
            if asyncio.get_running_loop().time() > deadline:
                missing = sum(c not in self.replies for c in correlations)
                raise AssertionError(f"{missing} of {len(correlations)} requests got no reply")
            await asyncio.sleep(0.05)

    def first(self, correlation: str) -> tuple[dict[str, Any], dict[str, str]]:
        body, hdrs = self.replies[correlation][0]
        return json.loads(body), hdrs
