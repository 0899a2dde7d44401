"""Getting past records the Kafka client cannot decode: the one mechanism every reader uses.

aiokafka raises (`UNDECODABLE`) on a record it cannot decode at all (a header name that is not
UTF-8, a corrupt batch), at the same position on every retry: left alone, a reader never gets
past it. Anyone who may write a topic can write such a record, so every reader steps over it:

- `first_readable` finds, from an offset on, the first offset that reads again (one fetch per
  offset tried: aiokafka decodes whole batches, so a good record in the same producer batch as
  a bad one fails with it);
- `pass_undecodable` is for readers of `getone()` (the requester's reply reader, the unit
  kit's request intake): it finds the partition that failed and steps over its bad records;
- `RecordReader` is for readers of `getmany()` (compacted tables, the journey log), which
  lose what a failed fetch had already taken, so it keeps its own next offsets and
  quarantines what it steps over.

Each says what it skipped (`Skipped`); the caller decides what that means (a dead letter, a
quarantine copy, a log line).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CorruptRecordException, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord

from mbs.kafka.quarantine import Quarantine

log = logging.getLogger("mbs.kafka")
UNDECODABLE: tuple[type[Exception], ...] = (UnicodeDecodeError, CorruptRecordException)
PROBE_MS = 1000


@dataclass(frozen=True)
class Skipped:
    """A record the Kafka client cannot decode, stepped over."""

    topic: str
    partition: int
    offset: int
    reason: str

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def skipped_between(tp: TopicPartition, start: int, stop: int) -> list[Skipped]:
    """The records at offsets `start` up to `stop` (excluded), as stepped over."""
    between = f" (offsets {start} to {stop - 1})" if stop - 1 > start else ""
    why = f"the Kafka client cannot decode this record{between}"
    return [Skipped(tp.topic, tp.partition, offset, why) for offset in range(start, stop)]


async def first_readable(consumer: AIOKafkaConsumer, tp: TopicPartition, start: int) -> int:
    """The first offset from `start` on that reads (or where nothing came in time, or the
    partition's end); the consumer is left positioned there, whatever the probe took is read
    again."""
    end = (await consumer.end_offsets([tp]))[tp]
    offset = start
    while offset < end:
        consumer.seek(tp, offset)
        try:
            await consumer.getmany(tp, timeout_ms=PROBE_MS, max_records=1)
        except UNDECODABLE:
            offset += 1
            continue
        break
    consumer.seek(tp, offset)
    return offset


async def pass_undecodable(consumer: AIOKafkaConsumer) -> list[Skipped]:
    """Step over the records the client cannot decode, after `getone()` raised one of
    UNDECODABLE; every other record is read again as usual.

    `getone()` raises at the bad record without moving past it, so each assigned partition's
    position is either a record that reads (put back) or the first bad one. Trying a partition
    costs a fetch, so the one aiokafka was reading is tried first, and the others only if it
    reads.
    """
    skipped: list[Skipped] = []
    try:
        suspect = _suspect(consumer)
        if suspect is not None:
            skipped = await _step_over(consumer, suspect)
        for tp in [] if skipped else sorted(consumer.assignment()):
            skipped += await _step_over(consumer, tp)
    except (IllegalStateError, KafkaError) as exc:  # a rebalance: the new owner reads on
        log.info("stepping over undecodable records interrupted (%r)", exc)
    return skipped


def _suspect(consumer: AIOKafkaConsumer) -> TopicPartition | None:
    """The partition `getone()` was reading when it raised: aiokafka drops each partition's
    fetched records once it has handed them all out, so it is the first it still holds (a
    private detail of aiokafka; without it, every partition is tried)."""
    fetched = getattr(getattr(consumer, "_fetcher", None), "_records", None)
    first = next(iter(fetched), None) if isinstance(fetched, dict) else None
    return first if isinstance(first, TopicPartition) and first in consumer.assignment() else None


async def _step_over(consumer: AIOKafkaConsumer, tp: TopicPartition) -> list[Skipped]:
    start = await consumer.position(tp)
    return skipped_between(tp, start, await first_readable(consumer, tp, start))


class RecordReader:
    """`getmany` that gets past records the Kafka client itself cannot decode.

    aiokafka drops what it had already taken from a fetch that fails on such a record, so this
    reader keeps its own next offset per partition; on such an error it goes back to them,
    reads one record at a time up to the failing one, steps over it (`first_readable`) and
    quarantines what lies between (`unreadable`; its bytes stay in the source topic only). The
    caller gets it as a record without key or value, at its offset.
    """

    STEP_LIMIT = 500  # records read one at a time per partition before normal reading resumes
    PROBE_MS = PROBE_MS

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
        """Step over the bad records from the first unread offset on; they come back as one
        record without key or value (already quarantined here)."""
        start = self.next[tp]
        stop = await first_readable(self.consumer, tp, start + 1)  # `start` just failed
        self.seek(tp, stop)
        skipped = skipped_between(tp, start, stop)[-1]
        detail = f"{skipped.reason}: {type(exc).__name__}"
        self.quarantine.report(tp.partition, skipped.offset, "unreadable", f"{detail}: {exc}")
        return ConsumerRecord(
            tp.topic, tp.partition, skipped.offset, -1, -1, None, None, None, -1, -1, ()
        )

    def _name(self) -> str:
        return self.quarantine.topic
