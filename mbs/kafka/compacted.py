"""A one-partition compacted topic read as a table, replayed from its start, then followed,
through a `RecordReader` (`mbs.kafka.undecodable`) that no record can stop.

The registry (`mbs.contracts`), the certifications (`mbs.certifications`) and the journey
definitions (`mbs.journeys.defs`) are such tables. Every record goes to `apply(key, value)` in
order (value None: a tombstone). A record `apply` refuses (any exception; `BadRecord` names
the reason), one without a UTF-8 key, or one the client cannot decode is skipped and
quarantined (see `mbs.kafka.quarantine`): one unreadable record never stops a reader.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from mbs.kafka.admin import ensure_topics
from mbs.kafka.connection import Connection
from mbs.kafka.quarantine import Apply, Quarantine, admit
from mbs.kafka.undecodable import RecordReader

COMPACTED = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
CATCH_UP_TIMEOUT_S = 30.0


class CompactedTopic:
    """Reads one compacted topic into whatever `apply` keeps."""

    def __init__(
        self,
        connection: Connection,
        topic: str,
        apply: Apply,
        *,
        config: dict[str, str] | None = None,
        quarantine: Quarantine | None = None,
    ) -> None:
        self.connection = connection
        self.topic = topic
        self.apply = apply
        self.config = COMPACTED if config is None else config
        self.quarantine = quarantine or Quarantine(topic, connection)
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
        reader = await self._open()
        try:
            end = (await reader.consumer.end_offsets([self._partition]))[self._partition]
            while self.offset < end:
                await self._read(reader, timeout_ms=1000)
        finally:
            await reader.consumer.stop()

    async def follow(self) -> None:
        """Replay up to the current end, then keep reading in the background until `stop()`."""
        reader = await self._open()
        self._consumer = reader.consumer
        end = (await self._consumer.end_offsets([self._partition]))[self._partition]
        self._task = asyncio.create_task(self._follow(reader), name=f"follow {self.topic}")
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
        await self.quarantine.close()

    async def _open(self) -> RecordReader:
        await ensure_topics(self.connection, [self.topic], partitions=1, config=self.config)
        consumer = AIOKafkaConsumer(
            **self.connection.options(),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        consumer.assign([self._partition])
        reader = RecordReader(consumer, self.quarantine)
        reader.seek(self._partition, self.offset)
        return reader

    async def _follow(self, reader: RecordReader) -> None:
        while True:
            before = self.offset
            await self._read(reader, timeout_ms=500)
            if self.offset != before:
                async with self._changed:
                    self._changed.notify_all()

    async def _read(self, reader: RecordReader, *, timeout_ms: int) -> None:
        batch = await reader.getmany(self._partition, timeout_ms=timeout_ms)
        for record in batch.get(self._partition, []):
            self._apply(record)
        # past compacted gaps and records the client could not decode, too
        self.offset = max(self.offset, reader.next.get(self._partition, self.offset))

    def _apply(self, record: Any) -> None:
        admit(record, self.apply, self.quarantine)
        self.offset = record.offset + 1
