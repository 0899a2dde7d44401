"""Request/reply over Kafka: requests on `<capability>.v<major>`, replies on `mbs.replies.<unit>`.

FastStream's `request()` works on Kafka only inside its test client, so this is ours. Each
request names the reply partition its sender reads (`mbs-reply-partition`); instances of a
caller that share a consumer group split the reply topics' partitions among them, so each
reads about its own share of the replies, and none steals another's (see `mbs.kafka.replies`).

Anyone who may write a topic may write anything to it, so no record stops a reader of replies:
a header without a value or not UTF-8 is read as text anyway, and a record the Kafka client
cannot decode at all is stepped over (`mbs.kafka.undecodable`), not retried forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from aiokafka import AIOKafkaProducer, ConsumerRecord

from mbs import wire as h
from mbs.kafka.admin import ensure_topics
from mbs.kafka.connection import Connection
from mbs.kafka.replies import ReplyReader

log = logging.getLogger("mbs.kafka.rpc")


@dataclass(frozen=True)
class Reply:
    """A unit's answer, with what it cost and what it charged."""

    body: bytes
    headers: dict[str, str]
    latency_ms: float
    partition: int = -1  # where it came, on its reply topic
    asked_partition: int | None = None  # where the request asked for it (`mbs-reply-partition`)

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
    """Sends requests and matches replies by `mbs-correlation-id`. With a `group`, the
    instances sharing it split the reply topics' partitions; without, this one reads them all."""

    connection: Connection
    caller: str
    group: str | None = None
    instance: str | None = None  # static membership of `group` (MBS_INSTANCE_ID)
    _producer: AIOKafkaProducer | None = None
    _replies: ReplyReader | None = None
    _topics: list[str] = field(default_factory=list)
    _pending: dict[str, asyncio.Future[Reply]] = field(default_factory=dict)
    _sent_at: dict[str, float] = field(default_factory=dict)
    _expected: dict[str, str] = field(default_factory=dict)
    _asked: dict[str, int] = field(default_factory=dict)

    async def start(self, reply_topics: Iterable[str]) -> None:
        """Connect, and be positioned on the reply partitions this instance reads before
        returning."""
        self._topics = sorted(set(reply_topics))
        await ensure_topics(self.connection, self._topics)
        self._producer = AIOKafkaProducer(
            **self.connection.options(),
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
        )
        await self._producer.start()
        self._replies = ReplyReader(
            self.connection, self._take, group=self.group, instance=self.instance
        )
        await self._replies.start(self._topics)

    @property
    def records_read(self) -> int:
        """Reply records this instance fetched, its own and any others' (a measure of routing)."""
        return self._replies.records_read if self._replies is not None else 0

    async def stop(self) -> None:
        if self._replies is not None:
            await self._replies.stop()
        for future in self._pending.values():
            future.cancel()
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
            partition = await asyncio.wait_for(self._route(reply_from), timeout_s)
            if partition is not None:
                hdrs[h.REPLY_PARTITION] = str(partition)
                self._asked[correlation_id] = partition
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
            self._asked.pop(correlation_id, None)

    async def _route(self, reply_from: str | None) -> int | None:
        """The reply partition to name: one this instance reads of the reply topic (known
        when given, or when there is only one)."""
        assert self._replies is not None
        if reply_from is None and len(self._topics) == 1:
            reply_from = self._topics[0]
        return None if reply_from is None else await self._replies.partition_for(reply_from)

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
        reply = Reply(
            body=record.value or b"",
            headers=hdrs,
            latency_ms=latency_ms,
            partition=record.partition,
            asked_partition=self._asked.get(correlation_id),
        )
        future.set_result(reply)


def text_headers(raw: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Headers as text, whatever their bytes: none is an empty value, bytes that are not UTF-8
    are escaped (`\\xff`), so a reader can look at them and decide, never crash on them."""
    return {name: (value or b"").decode(errors="backslashreplace") for name, value in raw or ()}
