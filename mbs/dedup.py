"""Replies remembered by request `mbs-message-id`, so a redelivered request is answered again
without running its handler twice, also after the unit restarts.

The unit's reply topic is the memory: every final reply carries `mbs-request-id`, so a
restarting unit rebuilds its memory by reading its own replies, and remembering a reply costs
no write beyond sending it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from mbs import headers as h
from mbs.kafka import client_options


@dataclass(frozen=True)
class StoredReply:
    """A reply as it was sent: body and headers."""

    body: bytes
    headers: dict[str, str]


class ReplyStore(Protocol):
    """Where a unit remembers what it replied to each message id."""

    def get(self, message_id: str) -> StoredReply | None: ...

    async def put(self, message_id: str, reply: StoredReply) -> None: ...


@dataclass
class MemoryReplyStore:
    """Remembers replies for the life of the process (tests, in-memory brokers)."""

    replies: dict[str, StoredReply] = field(default_factory=dict)

    def get(self, message_id: str) -> StoredReply | None:
        return self.replies.get(message_id)

    async def put(self, message_id: str, reply: StoredReply) -> None:
        self.replies[message_id] = reply


@dataclass
class KafkaReplyStore(MemoryReplyStore):
    """Also remembers the replies of earlier lives of the unit, read from `mbs.replies.<unit>`."""

    bootstrap: str = ""
    unit: str = ""

    async def load(self) -> int:
        """Read the unit's reply topic; returns how many replies are remembered."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            **client_options(),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        try:
            topic = h.reply_topic(self.unit)
            await consumer._client.force_metadata_update()
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            consumer.assign(parts)
            if not parts:
                return 0
            ends = await consumer.end_offsets(parts)
            # explicit seeks: seek_to_beginning() + position() reported the end here
            for tp, start in (await consumer.beginning_offsets(parts)).items():
                consumer.seek(tp, start)
            todo = {tp for tp in parts if ends[tp] > 0}
            while todo:
                batches = await consumer.getmany(*todo, timeout_ms=1000)
                for tp, records in batches.items():
                    for record in records:
                        self._remember(
                            {k: v.decode() for k, v in record.headers or ()},
                            record.value or b"",
                        )
                        if record.offset + 1 >= ends[tp]:
                            todo.discard(tp)
                todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
        finally:
            await consumer.stop()
        return len(self.replies)

    def _remember(self, headers: dict[str, str], body: bytes) -> None:
        request_id = headers.get(h.REQUEST_ID)
        if request_id and headers.get(h.SHADOW) != "1":
            self.replies[request_id] = StoredReply(body, headers)
