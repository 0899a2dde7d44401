"""How platform topics are read: a `RecordReader` that no record can stop, and a one-partition
compacted topic read as a table through it, replayed from its start, then followed.

The registry (`mbs.contracts`), the certifications (`mbs.certifications`) and the journey
definitions (`mbs.journeys.defs`) are such tables. Every record goes to `apply(key, value)` in
order (value None: a tombstone). A record `apply` refuses (any exception; `BadRecord` names
the reason), one without a UTF-8 key, or one the client cannot decode is skipped and
quarantined (see `mbs.kafka.quarantine`): one unreadable record never stops a reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CorruptRecordException, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord

from mbs.kafka.admin import ensure_topics
from mbs.kafka.connection import Connection
from mbs.kafka.quarantine import Apply, Quarantine, admit

log = logging.getLogger("mbs.kafka.compacted")
COMPACTED = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
CATCH_UP_TIMEOUT_S = 30.0
# What aiokafka raises, at the same position on every retry, for a record it cannot decode
# (a header name that is not UTF-8, a corrupt batch).
UNDECODABLE: tuple[type[BaseException], ...] = (UnicodeDecodeError, CorruptRecordException)


class RecordReader:
    """`getmany` that gets past records the Kafka client itself cannot decode.

    aiokafka raises on such a record (a header name that is not UTF-8, a corrupt batch) at the
    same position on every retry, and drops what it had already taken from the same fetch.
    So this reader keeps its own next offset per partition; on such an error it goes back to
    them, reads one record at a time up to the failing one, finds the first offset after it
    that reads again, and quarantines what lies between (`unreadable`; its bytes stay in the
    source topic only). The caller gets it as a record without key or value, at its offset.
    """

    STEP_LIMIT = 500  # records read one at a time per partition before normal reading resumes
    PROBE_MS = 1000

    def __init__(self, consumer: AIOKafkaConsumer, quarantine: Quarantine) -> None:
        self.consumer = consumer
        self.quarantine = quarantine
        self.next: dict[TopicPartition, int] = {}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Move the consumer; the reader starts `tp` from `offset`."""
        self.consumer.seek(tp, offset)
        self.next[tp] = offset

    def forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self.next.pop(tp, None)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int
    ) -> dict[TopicPartition, list[Any]]:
        """Like `AIOKafkaConsumer.getmany`; an undecodable record is skipped, not raised."""
        try:
            batches: dict[TopicPartition, list[Any]] = await self.consumer.getmany(
                *partitions, timeout_ms=timeout_ms
            )
        except UNDECODABLE as exc:
            log.warning("%s: the Kafka client cannot decode a record (%s)", self._name(), exc)
            return await self._recover(partitions)
        await self._advance(batches, partitions)
        return batches

    async def _advance(
        self, batches: dict[TopicPartition, list[Any]], partitions: tuple[TopicPartition, ...]
    ) -> None:
        """Record how far each partition was read (its position also passes compacted gaps)."""
        for tp in partitions or tuple(self.next):
            found = batches.get(tp)
            last = found[-1].offset + 1 if found else 0
            try:
                position = await self.consumer.position(tp)
            except IllegalStateError:  # no longer assigned
                continue
            self.next[tp] = max(self.next.get(tp, 0), last, position)

    async def _recover(
        self, partitions: tuple[TopicPartition, ...]
    ) -> dict[TopicPartition, list[Any]]:
        found: dict[TopicPartition, list[Any]] = {}
        try:
            assigned = [
                tp
                for tp in sorted(self.consumer.assignment())
                if tp in self.next and (not partitions or tp in partitions)
            ]
            for tp in assigned:  # what the failed fetch took is re-read, not lost
                self.consumer.seek(tp, self.next[tp])
            ends = await self.consumer.end_offsets(assigned) if assigned else {}
            for tp in assigned:
                records = await self._one_by_one(tp, ends[tp])
                if records:
                    found[tp] = records
        except (IllegalStateError, KafkaError) as error:  # a rebalance: its seeks win
            log.info("%s: recovery interrupted (%s); reading on", self._name(), error)
            await asyncio.sleep(0.1)
        return found

    async def _one_by_one(self, tp: TopicPartition, end: int) -> list[Any]:
        """Read `tp` a record at a time up to `end` (no waiting for an empty fetch there)."""
        records: list[Any] = []
        while len(records) < self.STEP_LIMIT and self.next[tp] < end:
            try:
                got = await self.consumer.getmany(tp, timeout_ms=self.PROBE_MS, max_records=1)
            except UNDECODABLE as error:
                return [*records, await self._pass(tp, error)]
            taken = got.get(tp, [])
            if not taken:
                return records
            records += taken
            self.next[tp] = taken[-1].offset + 1
        return records

    async def _pass(self, tp: TopicPartition, exc: BaseException) -> Any:
        """From the first unread offset on, find where reading works again; what lies before
        comes back as one record without key or value (already quarantined here)."""
        start = self.next[tp]
        end = (await self.consumer.end_offsets([tp]))[tp]
        probe = start + 1
        while probe < end:
            self.consumer.seek(tp, probe)
            try:
                await self.consumer.getmany(tp, timeout_ms=self.PROBE_MS, max_records=1)
            except UNDECODABLE:
                probe += 1
                continue
            break  # reads from `probe` (or nothing came in time): the bad record ends there
        self.seek(tp, probe)  # whatever the probe took is read again
        between = "" if probe - 1 == start else f" (offsets {start} to {probe - 1})"
        detail = f"the Kafka client cannot decode this record{between}: {type(exc).__name__}"
        self.quarantine.report(tp.partition, probe - 1, "unreadable", f"{detail}: {exc}")
        return ConsumerRecord(
            tp.topic, tp.partition, probe - 1, -1, -1, None, None, None, -1, -1, ()
        )

    def _name(self) -> str:
        return self.quarantine.topic


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
