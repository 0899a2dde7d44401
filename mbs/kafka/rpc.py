"""Request/reply over Kafka: requests on `<capability>.v<major>`, replies on `mbs.replies.<unit>`.

FastStream's `request()` works on Kafka only inside its test client, so this is ours. Each
requester reads the reply topics it needs without a consumer group (every instance sees every
reply and keeps only those whose correlation id it is waiting for), so several gateways never
steal each other's replies.

Anyone who may write a topic may write anything to it, so no record stops a reader of replies
or requests: a header without a value or not UTF-8 is read as text anyway, and a record the
Kafka client cannot decode at all (`pass_undecodable`) is stepped over, not retried forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CorruptRecordException, IllegalStateError, KafkaError

from mbs import wire as h
from mbs.kafka.admin import ensure_topics
from mbs.kafka.connection import Connection

log = logging.getLogger("mbs.kafka.rpc")
# What aiokafka raises, at the same offset on every retry, for a record it cannot decode (a
# header name that is not UTF-8, a corrupt batch): left alone, a reader never gets past it.
UNDECODABLE: tuple[type[Exception], ...] = (UnicodeDecodeError, CorruptRecordException)
PROBE_MS = 1000
READ_PAUSE_S = 0.5


@dataclass(frozen=True)
class Reply:
    """A unit's answer, with what it cost and what it charged."""

    body: bytes
    headers: dict[str, str]
    latency_ms: float

    @property
    def unit(self) -> str:
        return self.headers.get(h.UNIT, "")

    @property
    def error(self) -> str | None:
        return self.headers.get(h.ERROR)

    @property
    def error_detail(self) -> str:
        return self.headers.get(h.ERROR_DETAIL, "")

    @property
    def cost(self) -> Decimal:
        return Decimal(self.headers.get(h.COST, "0"))

    @property
    def price(self) -> Decimal:
        return Decimal(self.headers.get(h.PRICE, "0"))

    @property
    def handler_ms(self) -> float:
        return float(self.headers.get(h.HANDLER_MS, "0"))


@dataclass
class Requester:
    """Sends requests and matches replies by `mbs-correlation-id`."""

    connection: Connection
    caller: str
    _producer: AIOKafkaProducer | None = None
    _consumer: AIOKafkaConsumer | None = None
    _pending: dict[str, asyncio.Future[Reply]] = field(default_factory=dict)
    _sent_at: dict[str, float] = field(default_factory=dict)
    _expected: dict[str, str] = field(default_factory=dict)
    _reader: asyncio.Task[None] | None = None

    async def start(self, reply_topics: Iterable[str]) -> None:
        """Connect, and be positioned at the end of every reply topic before returning."""
        topics = sorted(set(reply_topics))
        await ensure_topics(self.connection, topics)
        self._producer = AIOKafkaProducer(
            **self.connection.options(),
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
        )
        self._consumer = AIOKafkaConsumer(
            **self.connection.options(),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=20,
            auto_offset_reset="latest",
        )
        await self._producer.start()
        await self._consumer.start()
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(self._consumer.partitions_for_topic(topic) or await self._fetch(topic))
        ]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve positions now, so no reply sent after this is missed
            await self._consumer.position(tp)
        self._reader = asyncio.create_task(self._read_replies(), name="mbs-replies")

    async def _fetch(self, topic: str) -> set[int]:
        assert self._consumer is not None
        for _ in range(50):
            await self._consumer._client.force_metadata_update()
            parts = self._consumer.partitions_for_topic(topic)
            if parts:
                return set(parts)
            await asyncio.sleep(0.1)
        raise RuntimeError(f"reply topic {topic} has no partitions")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for future in self._pending.values():
            future.cancel()
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def request(
        self,
        topic: str,
        payload: bytes,
        *,
        timeout_s: float,
        key: bytes | None = None,
        extra_headers: dict[str, str] | None = None,
        reply_from: str | None = None,
    ) -> Reply:
        """Send one request and wait for its reply; `TimeoutError` when none comes in time.
        With `reply_from`, only a reply on that topic (the provider's own) is accepted."""
        assert self._producer is not None, "call start() first"
        correlation_id = uuid.uuid4().hex
        deadline_ms = int((time.time() + timeout_s) * 1000)
        hdrs = {
            h.MESSAGE_ID: uuid.uuid4().hex,
            h.CORRELATION_ID: correlation_id,
            h.CALLER: self.caller,
            h.DEADLINE: str(deadline_ms),
            **(extra_headers or {}),
        }
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        self._sent_at[correlation_id] = time.perf_counter()
        if reply_from is not None:
            self._expected[correlation_id] = reply_from
        try:
            await self._producer.send_and_wait(
                topic,
                payload,
                key=key,
                headers=[(k, v.encode()) for k, v in hdrs.items()],
            )
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._pending.pop(correlation_id, None)
            self._sent_at.pop(correlation_id, None)
            self._expected.pop(correlation_id, None)

    async def _read_replies(self) -> None:
        """Hand each reply to its waiting caller; nothing on a reply topic stops this loop
        (it is the only way replies come in: if it ended, every call would time out)."""
        consumer = self._consumer
        assert consumer is not None
        while True:
            try:
                record = await consumer.getone()
            except UNDECODABLE as exc:
                for skipped in await pass_undecodable(consumer):
                    log.warning("reply %s skipped: %s (%s)", skipped.where, skipped.reason, exc)
                continue
            except KafkaError as exc:
                log.warning("reading replies: %r; reading on", exc)
                await asyncio.sleep(READ_PAUSE_S)
                continue
            try:
                self._take(record)
            except Exception:  # one reply, however malformed, must not end the loop
                log.exception(
                    "reply %s[%d]@%d ignored", record.topic, record.partition, record.offset
                )

    def _take(self, record: ConsumerRecord[bytes, bytes]) -> None:
        hdrs = text_headers(record.headers)
        correlation_id = hdrs.get(h.CORRELATION_ID, "")
        future = self._pending.get(correlation_id)
        if future is None or future.done():
            return  # another instance's reply, or one that came after its timeout
        expected = self._expected.get(correlation_id)
        if expected is not None and record.topic != expected:
            log.warning(
                "reply %s on %s ignored: only %s may answer it",
                correlation_id,
                record.topic,
                expected,
            )
            return
        latency_ms = (time.perf_counter() - self._sent_at[correlation_id]) * 1000
        future.set_result(Reply(body=record.value or b"", headers=hdrs, latency_ms=latency_ms))


def text_headers(raw: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Headers as text, whatever their bytes: none is an empty value, bytes that are not UTF-8
    are escaped (`\\xff`), so a reader can look at them and decide, never crash on them."""
    return {name: (value or b"").decode(errors="backslashreplace") for name, value in raw or ()}


@dataclass(frozen=True)
class Skipped:
    """A record the Kafka client cannot decode, stepped over by `pass_undecodable`."""

    topic: str
    partition: int
    offset: int
    reason: str

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


async def pass_undecodable(consumer: AIOKafkaConsumer) -> list[Skipped]:
    """Step over the records the client cannot decode, after `getone()` raised one of
    UNDECODABLE; every other record is read again as usual.

    `getone()` raises at the bad record without moving past it, so each assigned partition's
    position is either a record that reads (put back) or the first bad one: from there, the
    first offset that reads again is found by trying one offset after the other (a good record
    in the same producer batch as a bad one fails with it: aiokafka decodes whole batches).
    Trying a partition costs a fetch (about 0.1 s), so the one aiokafka was reading is tried
    first, and the others only if it reads. The caller decides what to do with what was
    skipped (dead-letter it, log it, commit past it).
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
    end = (await consumer.end_offsets([tp]))[tp]
    offset = start
    while offset < end and not await _readable(consumer, tp, offset):
        offset += 1
    consumer.seek(tp, offset)
    why = f"the Kafka client cannot decode this record (offsets {start} to {offset - 1})"
    return [Skipped(tp.topic, tp.partition, o, why) for o in range(start, offset)]


async def _readable(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> bool:
    consumer.seek(tp, offset)
    try:
        await consumer.getmany(tp, timeout_ms=PROBE_MS, max_records=1)
    except UNDECODABLE:
        return False
    return True
