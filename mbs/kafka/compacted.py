"""A one-partition compacted topic read as a table: replayed from its start, then followed.

The registry (`mbs.contracts`), the certifications (`mbs.certifications`) and the journey
definitions (`mbs.journeys.defs`) are such tables. Every record goes to `apply(key, value)` in
order (value None: a tombstone); a record that cannot be applied is logged and skipped, since
one unreadable record must never stop a reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from mbs.kafka.admin import ensure_topics
from mbs.kafka.connection import Connection

log = logging.getLogger("mbs.kafka.compacted")
COMPACTED = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
CATCH_UP_TIMEOUT_S = 30.0

Apply = Callable[[str, bytes | None], None]


class CompactedTopic:
    """Reads one compacted topic into whatever `apply` keeps."""

    def __init__(
        self,
        connection: Connection,
        topic: str,
        apply: Apply,
        *,
        config: dict[str, str] | None = None,
    ) -> None:
        self.connection = connection
        self.topic = topic
        self.apply = apply
        self.config = COMPACTED if config is None else config
        self.offset = 0  # the next record to read
        self._partition = TopicPartition(topic, 0)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    async def catch_up(self) -> None:
        """Read every record up to the topic's current end; later calls read only what is new."""
        if self._consumer is not None:
            end = (await self._consumer.end_offsets([self._partition]))[self._partition]
            await self.wait_for(end)
            return
        consumer = await self._open()
        try:
            end = (await consumer.end_offsets([self._partition]))[self._partition]
            while self.offset < end:
                batch = await consumer.getmany(self._partition, timeout_ms=1000)
                for record in batch.get(self._partition, []):
                    self._apply(record.key, record.value, record.offset)
        finally:
            await consumer.stop()

    async def follow(self) -> None:
        """Replay up to the current end, then keep reading in the background until `stop()`."""
        self._consumer = await self._open()
        end = (await self._consumer.end_offsets([self._partition]))[self._partition]
        self._task = asyncio.create_task(self._follow(self._consumer), name=f"follow {self.topic}")
        await self.wait_for(end)

    async def wait_for(self, offset: int) -> None:
        """Return once every record before `offset` has been applied."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: self.offset >= offset), CATCH_UP_TIMEOUT_S
            )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _open(self) -> AIOKafkaConsumer:
        await ensure_topics(self.connection, [self.topic], partitions=1, config=self.config)
        consumer = AIOKafkaConsumer(
            **self.connection.options(),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        consumer.assign([self._partition])
        consumer.seek(self._partition, self.offset)
        return consumer

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        async for record in consumer:
            self._apply(record.key, record.value, record.offset)
            async with self._changed:
                self._changed.notify_all()

    def _apply(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        try:
            self.apply(key.decode() if key else "", value)
        except ValueError:
            log.exception("unreadable record at %s@%d skipped", self.topic, offset)
        self.offset = offset + 1
