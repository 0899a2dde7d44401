"""The journey log: every state change of every run, in `mbs.journeys.state` (compacted).

A run is written before the engine acts on it. Two readers follow the log:
- the *observer* (every gateway instance, all partitions) keeps recent runs for
  `GET /journeys/{name}/runs/{id}` and wakes the HTTP call waiting for a run to finish;
- the *executor* (consumer group `mbs.gateway`, so each partition has one owner) runs the
  journeys of its partitions. On assignment it first fences the partitions' earlier writers
  (see `gateway.fencing`), then replays them and resumes every run that has not finished, so
  a gateway killed mid-journey loses nothing and one that lost its partitions writes nothing.

Both read committed records only (the engine writes in transactions); a new run or an
operator's reopening is handed to the partition's owner with a plain write (`submit`).

Each record is judged on its own: one that is not a saved run filed under its own run id is
skipped and copied to `<topic>.dlq` (see `mbs.kafka.quarantine`); the state before it stands
and every other run resumes. Records are parsed lazily (a full parse costs ~0.2 ms): one that
looks like what `save` writes is kept raw and parsed when needed, any other is read at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import IllegalStateError

from gateway.fencing import FencedWriter, NotOwner, partition_of
from gateway.models import JourneyRun
from gateway.ownership import PartitionOwner, Replay
from gateway.runcache import RunCache, looks_decided, raw_status
from mbs.kafka import (
    BadRecord,
    Connection,
    Quarantine,
    RecordReader,
    ensure_topics,
    text_key,
    verdict,
)

log = logging.getLogger("mbs.gateway.runlog")
STATE_PARTITIONS = 6
# Compacted: a run's earlier states go once newer ones are a minute old; its last state goes
# when its owner deletes the run (`gateway.retention`); segments roll hourly so the cleaner
# reaches them (it never cleans the open one).
STATE_CONFIG = {
    "cleanup.policy": "compact",
    "min.compaction.lag.ms": "60000",
    "segment.ms": "3600000",
}

# (run id, value, partition, offset); value None: a record with nothing to act on (a
# tombstone, or one skipped as unreadable) that still moves the replay on.
RecordHandler = Callable[[str, bytes | None, int, int], Awaitable[None]]
# (partition, position): how far a reader got, past transaction markers and compacted gaps
PositionHandler = Callable[[int, int], Awaitable[None]]


class RunLog:
    """Writes runs to the state topic and follows it as observer and executor."""

    def __init__(
        self,
        connection: Connection,
        topic: str,
        group: str,
        cache_bytes: int = 64 << 20,
        instance: str | None = None,
    ) -> None:
        self.connection, self.topic, self.group = connection, topic, group
        self.instance = instance  # static membership of `group` (MBS_INSTANCE_ID)
        self.runs = RunCache(cache_bytes)
        self._waiters: dict[str, list[asyncio.Future[JourneyRun]]] = {}
        self._observed: dict[int, int] = {}  # partition -> next offset the observer reads
        self._replay_to: dict[int, int] = {}  # partition -> end offset when it started
        self._producer: AIOKafkaProducer | None = None
        self._writers: dict[int, FencedWriter] = {}
        self.rebalances = 0  # a position read across a rebalance may predate its seeks
        self._tasks: list[asyncio.Task[None]] = []
        self._consumers: list[AIOKafkaConsumer] = []
        self.quarantine = Quarantine(topic, connection)  # shared: each bad record reported once

    async def start(self, owner: PartitionOwner) -> None:
        await ensure_topics(
            self.connection, [self.topic], partitions=STATE_PARTITIONS, config=STATE_CONFIG
        )
        self._producer = AIOKafkaProducer(
            **self.connection.options(),
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
        )
        await self._producer.start()
        observer = await self._observer()
        consumer = AIOKafkaConsumer(
            **self.connection.options(),
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            fetch_max_wait_ms=20,
            session_timeout_ms=6_000,
            heartbeat_interval_ms=1000,
            group_instance_id=self.instance,
        )
        await consumer.start()
        executor = RecordReader(consumer, self.quarantine)
        consumer.subscribe([self.topic], listener=Replay(executor, self, owner))
        self._consumers = [observer.consumer, consumer]
        self._tasks = [
            asyncio.create_task(
                self._follow(observer, self.observe, self._observed_to), name="runlog-observer"
            ),
            asyncio.create_task(
                self._follow(executor, owner.on_record, owner.on_position), name="runlog-executor"
            ),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for consumer in self._consumers:
            await consumer.stop()
        await self.release(set(self._writers))
        if self._producer is not None:
            await self._producer.stop()
        await self.quarantine.close()

    async def save(self, run: JourneyRun) -> None:
        """The engine's write: the run's new state, committed through the partition's fenced
        writer before this returns. `NotOwner` when this gateway does not own the partition
        (any more): the run must stop, its owner takes it up."""
        writer = self._writer(run.run_id)
        run.revision += 1
        value = run.model_dump_json().encode()
        await writer.write(run.run_id.encode(), value)
        self.runs.keep(run.run_id, value)  # shown at once; its echo from the log is not kept

    async def delete(self, run_id: str) -> None:
        """Delete a finished run (a tombstone, through the partition's fenced writer)."""
        await self._writer(run_id).write(run_id.encode(), None)

    def _writer(self, run_id: str) -> FencedWriter:
        """The fenced writer of the run's partition; `NotOwner` if this gateway has none."""
        partition = partition_of(run_id, STATE_PARTITIONS)
        writer = self._writers.get(partition)
        if writer is None:
            raise NotOwner(f"journey-log partition {partition} is not this gateway's")
        return writer

    async def submit(self, run: JourneyRun) -> int:
        """Hand a new (or reopened) run to its partition's owner, whoever that is: a plain
        write, acknowledged by every in-sync replica before this returns; its partition."""
        assert self._producer is not None, "start() first"
        run.revision += 1
        partition = partition_of(run.run_id, STATE_PARTITIONS)
        await self._producer.send_and_wait(
            self.topic, run.model_dump_json().encode(), key=run.run_id.encode(), partition=partition
        )
        return partition

    async def fence(self, partitions: set[int]) -> None:
        """Become the only writer of these partitions (before their end is read)."""
        fresh = {p: FencedWriter(self.connection, self.topic, self.group, p) for p in partitions}
        await self.release(set(fresh) & set(self._writers))
        await asyncio.gather(*(writer.start() for writer in fresh.values()))
        self._writers.update(fresh)

    async def release(self, partitions: set[int]) -> None:
        """Commit what is queued for these partitions and give them up."""
        writers = [self._writers.pop(p) for p in partitions if p in self._writers]
        await asyncio.gather(*(writer.close() for writer in writers))

    async def flush(self) -> None:
        """Until every new run handed over so far is in the log (sent, or failed)."""
        if self._producer is not None:
            await self._producer.flush()

    def get(self, run_id: str) -> JourneyRun | None:
        """A run this gateway has seen (its own or read from the log), newest state; None
        also when that state is unreadable (the partition's executor quarantines it)."""
        found = self.runs.raw(run_id)
        if found is None:
            return None
        try:
            return _parse(run_id, found)
        except ValueError as exc:
            log.warning("run %s: newest state unreadable (%s)", run_id, verdict(exc)[1])
            self.runs.forget(run_id)
            return None

    def read(self, run_id: str, value: bytes, partition: int, offset: int) -> JourneyRun | None:
        """The run in a record, or None when it is not one (then quarantined)."""
        try:
            return _parse(run_id, value)
        except ValueError as exc:
            self.quarantine.report(partition, offset, *verdict(exc), run_id.encode(), value)
            return None

    def parked(self) -> list[JourneyRun]:
        """Recent runs whose side effects could not all be settled or undone."""
        found = []
        for run_id, value in self.runs.items():
            if raw_status(value) == b"compensation_failed":
                run = self.get(run_id)
                if run is not None and run.status == "compensation_failed":
                    found.append(run)
        return found

    def finished_here(self, run: JourneyRun) -> None:
        """This gateway ended the run: wake its waiters now rather than via the log (its
        state is kept by `save`, raw)."""
        for future in self._waiters.pop(run.run_id, []):
            if not future.done():
                future.set_result(run)

    async def wait_finished(self, run_id: str, timeout_s: float) -> JourneyRun | None:
        """The run once its outcome is known; None if it is still running after `timeout_s`."""
        raw = self.runs.raw(run_id)
        known = self.get(run_id) if raw is not None and looks_decided(raw) else None
        if known is not None and known.decided:
            return known
        future: asyncio.Future[JourneyRun] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(run_id, []).append(future)
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(run_id, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiters.pop(run_id, None)

    async def _observer(self) -> RecordReader:
        consumer = AIOKafkaConsumer(
            **self.connection.options(),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_wait_ms=20,
        )
        await consumer.start()
        parts = [TopicPartition(self.topic, p) for p in range(STATE_PARTITIONS)]
        consumer.assign(parts)
        reader = RecordReader(consumer, self.quarantine)
        for tp, offset in (await consumer.beginning_offsets(parts)).items():
            reader.seek(tp, offset)
            self._observed[tp.partition] = offset
        ends = await consumer.end_offsets(parts)
        self._replay_to = {tp.partition: end for tp, end in ends.items()}
        return reader

    @property
    def caught_up(self) -> bool:
        """The observer has read the log as far as it reached at start, so every run written
        before is known to `get` (a restarted gateway does not answer 404 for them)."""
        return bool(self._replay_to) and all(
            self._observed.get(p, 0) >= end for p, end in self._replay_to.items()
        )

    async def observe(self, run_id: str, value: bytes | None, partition: int, offset: int) -> None:
        """Keep the raw record; parse only what someone is waiting for."""
        self._observed[partition] = max(self._observed.get(partition, 0), offset + 1)
        if value is None:  # deleted (retention), or nothing readable: not shown any more
            self.runs.forget(run_id)
            return
        if not looks_saved(run_id, value) and self.read(run_id, value, partition, offset) is None:
            return  # not a run: the state before it stands
        self.runs.keep(run_id, value)  # unless it is an echo of an earlier state
        if run_id in self._waiters and looks_decided(value):
            # also when it is this gateway's own decided state read back: `save` kept it
            # already, and the run may go on settling calls before `finished_here`
            run = self.read(run_id, value, partition, offset)
            if run is not None and run.decided:
                for future in self._waiters.pop(run_id, []):
                    if not future.done():
                        future.set_result(run)

    async def _observed_to(self, partition: int, position: int) -> None:
        self._observed[partition] = max(self._observed.get(partition, 0), position)

    async def _follow(
        self, reader: RecordReader, handle: RecordHandler, reached: PositionHandler
    ) -> None:
        """Hand on every record, then how far each partition was read: a partition's last
        offsets may hold no record (transaction markers), yet its replay is over there."""
        while True:
            batches = await reader.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    await self._deliver(record, tp.partition, handle)
            rebalances = self.rebalances
            positions = []
            for tp in sorted(reader.consumer.assignment()):
                with contextlib.suppress(IllegalStateError):  # revoked meanwhile
                    positions.append((tp.partition, await reader.consumer.position(tp)))
            if rebalances == self.rebalances:
                for partition, position in positions:
                    await reached(partition, position)

    async def _deliver(self, record: Any, partition: int, handle: RecordHandler) -> None:
        """Hand one record on; whatever it holds, the reader goes on with the next."""
        value = record.value
        try:
            run_id = text_key(record.key)
        except BadRecord as exc:
            self.quarantine.refuse(record, exc)
            run_id, value = "", None
        try:
            await handle(run_id, value, partition, record.offset)
        except Exception as exc:
            log.exception("run record %s[%d]@%d not handled", self.topic, partition, record.offset)
            self.quarantine.refuse(record, exc)


def looks_saved(run_id: str, value: bytes) -> bool:
    """Cheap: does the record look like what `save` writes for this run? (Then it is parsed
    only when needed; anything else is read, and judged, at once.)"""
    start = b'{"run_id":%s,' % json.dumps(run_id, ensure_ascii=False).encode()
    return value.startswith(start) and value.endswith(b"}")


def _parse(run_id: str, value: bytes) -> JourneyRun:
    run = JourneyRun.model_validate_json(value)
    if run.run_id != run_id:
        raise BadRecord("refused", f"filed under run {run_id!r}, but holds run {run.run_id!r}")
    return run
