"""Fenced writers: only the gateway that owns a journey-log partition can write its runs.

A gateway that stalls (a long pause, a broker it cannot reach) may lose its partitions to
another instance without noticing; until it does, it would go on executing runs that the new
owner has resumed: a zombie. So every state the engine saves goes through a transactional
producer whose `transactional.id` is the partition's (`<group>.p<partition>`). The new owner
starts its producer for that partition *before* it reads where the log ends; Kafka then
bumps the id's epoch, aborts whatever the old owner had not committed, and refuses every
later write of the old producer (`ProducerFenced`). Since the engine saves a state before it
acts on it, a fenced zombie stops before it can send anything the new owner does not know of.

Saves are group-committed: while one transaction is on its way, the saves that come in wait
and go together in the next one, so a busy partition pays the commit once per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import ProducerFenced
from aiokafka.partitioner import DefaultPartitioner

from mbs.errors import MbsError
from mbs.kafka import Connection

log = logging.getLogger("mbs.gateway.fencing")
TRANSACTION_TIMEOUT_MS = 30_000
_partitioner = DefaultPartitioner()


class NotSaved(MbsError):
    """A state was not committed; the run stops here and is taken up again from the log."""


class NotOwner(NotSaved):
    """This gateway may not write the partition: it never owned it, lost it, or was fenced
    (the partition's owner resumes the run)."""


def partition_of(run_id: str, partitions: int) -> int:
    """The journey-log partition of a run: Kafka's default partitioner on the run id."""
    return int(_partitioner(run_id.encode(), list(range(partitions)), None))


def transactional_id(group: str, partition: int) -> str:
    return f"{group}.p{partition}"


class FencedWriter:
    """Writes one partition of the journey log in transactions, for as long as it owns it."""

    def __init__(self, connection: Connection, topic: str, group: str, partition: int) -> None:
        self.topic, self.partition = topic, partition
        self.producer = AIOKafkaProducer(
            **connection.options(),
            transactional_id=transactional_id(group, partition),
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
        )
        self._queue: list[tuple[bytes, bytes | None, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.broken: str | None = None

    async def start(self) -> None:
        """Take the partition: fences every earlier writer of it (their open transaction is
        aborted, their later writes refused) before this returns."""
        await self.producer.start()  # returns once the producer id is ours: others fenced
        self._task = asyncio.create_task(self._commit_loop(), name=f"runlog-p{self.partition}")

    async def write(self, key: bytes, value: bytes | None) -> None:
        """Once this returns, the record (None: a tombstone) is committed; `NotOwner` if it
        cannot be, `NotSaved` if Kafka did not take it."""
        if self.broken is not None:
            raise NotOwner(f"journey-log partition {self.partition}: {self.broken}")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((key, value, future))
        self._wake.set()
        await future

    async def close(self) -> None:
        """Commit what was queued, then give the partition up."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.broken = self.broken or "given up (the partition went to another gateway)"
        self._fail(self._queue, NotOwner(f"journey-log partition {self.partition}: given up"))
        with contextlib.suppress(Exception):
            await self.producer.stop()

    async def _commit_loop(self) -> None:
        while self.broken is None:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            batch = [item for item in batch if not item[2].done()]
            if batch:
                await self._commit(batch)
            if self._closing and not self._queue:
                return

    async def _commit(self, batch: list[tuple[bytes, bytes | None, asyncio.Future[None]]]) -> None:
        try:
            await self.producer.begin_transaction()
            sent = [
                await self.producer.send(self.topic, value, key=key, partition=self.partition)
                for key, value, _ in batch
            ]
            await self.producer.commit_transaction()
            await asyncio.gather(*sent)
        except ProducerFenced:
            self.broken = "another gateway took it over (this writer is fenced)"
            log.warning("journey-log partition %d: %s", self.partition, self.broken)
            self._fail(batch, NotOwner(f"journey-log partition {self.partition}: {self.broken}"))
        except Exception as exc:
            log.warning("journey-log partition %d: a commit failed (%r)", self.partition, exc)
            await self._abort(exc)
            self._fail(batch, NotSaved(f"journey-log partition {self.partition}: {exc!r}"))
        else:
            for *_, future in batch:
                if not future.done():
                    future.set_result(None)

    async def _abort(self, cause: BaseException) -> None:
        """After a failed commit the transaction is aborted, so the next one can start; a
        writer that cannot even abort is given up (the partition's runs wait for its next
        owner) rather than recreated, since a new producer would fence the rightful one."""
        try:
            await asyncio.wait_for(self.producer.abort_transaction(), TRANSACTION_TIMEOUT_MS / 1e3)
        except Exception as exc:
            self.broken = f"a commit failed ({cause!r}) and could not be aborted ({exc!r})"
            log.error("journey-log partition %d: %s", self.partition, self.broken)

    @staticmethod
    def _fail(
        batch: list[tuple[bytes, bytes | None, asyncio.Future[None]]], error: NotSaved
    ) -> None:
        for *_, future in batch:
            if not future.done():
                future.set_exception(error)
