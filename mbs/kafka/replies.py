"""Where a requester's replies come in: the reply topics, split among the caller's instances.

Replies are routed by partition, as Spring Kafka's replying template routes them. Instances of
a caller that share a `group` (the gateway's: `mbs.gateway.replies`) join one consumer group
over the reply topics, so Kafka splits the topics' partitions among them; a request names a
partition its sender reads (`mbs-reply-partition`), and the unit writes its reply there. With
N instances each reads about 1/N of the replies, not all of them.

- Partitions are dealt round-robin over every topic-partition, so while a reply topic has at
  least as many partitions as there are instances, each instance owns at least one of every
  reply topic. An instance that owns none of a topic (more instances than its partitions)
  reads that topic whole on a second consumer outside the group and names no partition: the
  unit then writes by key, as without routing. Correct, not cheap (see SCALING.md).
- A partition kept through a rebalance is read on from where this instance stopped, so no
  reply sent to it meanwhile is lost; a newly owned one is read from its end (what lies
  before was addressed to its previous owner). Requests wait while a rebalance is under way.
- A reply to a partition that moved to another instance in a rebalance never reaches its
  asker. The asker times out, and the gateway's engine asks again under the same message id,
  which the unit answers from its memory: the recovery of any lost reply.
- Without a group (the conformance kit, tests), the reader owns every partition and still
  names one per request, so the kit can check that a unit honours the header.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import KafkaError

from mbs.kafka.connection import Connection
from mbs.kafka.undecodable import UNDECODABLE, pass_undecodable

log = logging.getLogger("mbs.kafka.rpc")
READ_PAUSE_S = 0.5
JOIN_TIMEOUT_S = 60.0
Take = Callable[[ConsumerRecord[bytes, bytes]], None]


class ReplyReader:
    """Reads the reply topics, hands every record to `take`, and says which partition of each
    topic a request may name for its reply."""

    def __init__(
        self,
        connection: Connection,
        take: Take,
        *,
        group: str | None = None,
        instance: str | None = None,
    ) -> None:
        self.connection, self.take, self.group = connection, take, group
        self.instance = instance  # static membership of `group`
        self.records_read = 0  # every reply record fetched, kept by `take` or not
        self.owned: dict[str, list[int]] = {}
        self.settled = asyncio.Event()  # clear while a rebalance is under way
        self._topics: list[str] = []
        self._next: dict[TopicPartition, int] = {}  # where reading stands, per owned partition
        self._spare: AIOKafkaConsumer | None = None
        self._spare_topics: frozenset[str] = frozenset()
        self._consumers: list[AIOKafkaConsumer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._turn = itertools.count()

    async def start(self, topics: Iterable[str], *, timeout_s: float = JOIN_TIMEOUT_S) -> None:
        """Read `topics`; returns once this instance knows which partitions it reads and is
        positioned on each, so no reply sent after this is missed."""
        self._topics = sorted(set(topics))
        consumer = await self._open(self.group)
        if self.group is None:
            partitions = await _partitions(consumer, self._topics)
            consumer.assign(partitions)
            await _position(consumer, partitions, {})
            self.owned = _by_topic(partitions)
            self.settled.set()
        else:
            consumer.subscribe(self._topics, listener=_Rebalance(self, consumer))
        self._read_on(consumer, track=True)
        await asyncio.wait_for(self.settled.wait(), timeout_s)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for consumer in self._consumers:  # a group member leaves: the others take over at once
            await consumer.stop()

    async def partition_for(self, topic: str) -> int | None:
        """A partition of `topic` this instance reads, for a request to name (waiting while a
        rebalance is under way); None when it reads the topic whole, or not at all."""
        await self.settled.wait()
        owned = self.owned.get(topic)
        return owned[next(self._turn) % len(owned)] if owned else None

    async def _open(self, group: str | None) -> AIOKafkaConsumer:
        options: dict[str, Any] = {}
        if group is not None:
            options = {
                # round-robin, so each instance owns a partition of every topic while there
                # are at least as many partitions as instances
                "partition_assignment_strategy": (RoundRobinPartitionAssignor,),
                "session_timeout_ms": 6_000,
                "heartbeat_interval_ms": 1000,
                "group_instance_id": self.instance,
            }
        consumer = AIOKafkaConsumer(
            **self.connection.options(),
            group_id=group,
            enable_auto_commit=False,  # positions are this instance's alone (see `_assigned`)
            auto_offset_reset="latest",
            fetch_max_wait_ms=20,
            **options,
        )
        await consumer.start()
        self._consumers.append(consumer)
        return consumer

    async def _assigned(self, consumer: AIOKafkaConsumer, assigned: list[TopicPartition]) -> None:
        """After a rebalance: read on where kept, from the end where new; cover the rest."""
        owned = _by_topic(assigned)
        while True:
            try:
                kept = {tp: self._next[tp] for tp in assigned if tp in self._next}
                self._next = await _position(consumer, assigned, kept)
                await self._cover([t for t in self._topics if t not in owned])
                break
            except KafkaError as exc:  # nothing is served until this works: keep trying
                log.warning("positioning on reply partitions: %r; trying again", exc)
                await asyncio.sleep(READ_PAUSE_S)
        self.owned = owned
        self.settled.set()
        log.info("reading reply partitions %s", owned)

    async def _cover(self, orphans: list[str]) -> None:
        """Read whole, outside the group, the reply topics this instance owns no partition of."""
        if frozenset(orphans) == self._spare_topics:
            return
        if orphans:
            log.warning(
                "no partition of %s is this instance's (more instances than partitions): "
                "reading them whole",
                ", ".join(orphans),
            )
        if self._spare is None:
            self._spare = await self._open(None)
            self._read_on(self._spare, track=False)
        spare = self._spare
        kept = {tp: await spare.position(tp) for tp in spare.assignment() if tp.topic in orphans}
        partitions = await _partitions(self._consumers[0], orphans)  # it knows every topic
        spare.assign(partitions)
        await _position(spare, partitions, kept)
        self._spare_topics = frozenset(orphans)

    def _read_on(self, consumer: AIOKafkaConsumer, *, track: bool) -> None:
        self._tasks.append(asyncio.create_task(self._read(consumer, track), name="mbs-replies"))

    async def _read(self, consumer: AIOKafkaConsumer, track: bool) -> None:
        """Hand each reply to `take`; nothing on a reply topic stops this loop (it is the only
        way replies come in: if it ended, every call would time out)."""
        while True:
            try:
                record = await consumer.getone()
            except UNDECODABLE as exc:
                for skipped in await pass_undecodable(consumer):
                    self.records_read += 1
                    log.warning("reply %s skipped: %s (%s)", skipped.where, skipped.reason, exc)
                continue
            except KafkaError as exc:
                log.warning("reading replies: %r; reading on", exc)
                await asyncio.sleep(READ_PAUSE_S)
                continue
            self.records_read += 1
            if track:
                self._next[TopicPartition(record.topic, record.partition)] = record.offset + 1
            try:
                self.take(record)
            except Exception:  # one reply, however malformed, must not end the loop
                log.exception(
                    "reply %s[%d]@%d ignored", record.topic, record.partition, record.offset
                )


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Holds requests back while the group deals the partitions anew."""

    def __init__(self, reader: ReplyReader, consumer: AIOKafkaConsumer) -> None:
        self.reader, self.consumer = reader, consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.reader.settled.clear()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.reader._assigned(self.consumer, sorted(assigned))


def _by_topic(partitions: Iterable[TopicPartition]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for tp in sorted(partitions):
        found.setdefault(tp.topic, []).append(tp.partition)
    return found


async def _position(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], kept: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Seek each partition to its kept position, or to its end; where each now stands."""
    fresh = [tp for tp in partitions if tp not in kept]
    at = {**(await consumer.end_offsets(fresh) if fresh else {}), **kept}
    for tp, offset in at.items():
        consumer.seek(tp, offset)
    return at


async def _partitions(consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    found: list[TopicPartition] = []
    for topic in topics:
        parts = consumer.partitions_for_topic(topic)
        for _ in range(50):
            if parts:
                break
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
            parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise RuntimeError(f"reply topic {topic} has no partitions")
        found += [TopicPartition(topic, p) for p in sorted(parts)]
    return found
