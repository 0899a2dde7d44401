"""Replies remembered by request `mbs-message-id`, so a redelivered request is answered again
without running its handler twice, also after the unit restarts (the store is a Kafka topic)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker

from mbs.topics import ensure_topics

RETAIN_MS = 7 * 24 * 3600 * 1000
STORE_CONFIG = {"cleanup.policy": "compact,delete", "retention.ms": str(RETAIN_MS)}


@dataclass(frozen=True)
class StoredReply:
    """A reply as it was sent: body and headers."""

    body: bytes
    headers: dict[str, str]

    def encode(self) -> bytes:
        return json.dumps(
            {"body": self.body.decode("utf-8", "replace"), "headers": self.headers}
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> StoredReply:
        data = json.loads(raw)
        return cls(body=data["body"].encode(), headers=data["headers"])


class ReplyStore(Protocol):
    """Where a unit remembers what it replied to each message id."""

    def get(self, message_id: str) -> StoredReply | None: ...

    async def put(self, message_id: str, reply: StoredReply) -> None: ...


@dataclass
class MemoryReplyStore:
    """Remembers replies for the life of the process (tests, dry runs)."""

    replies: dict[str, StoredReply] = field(default_factory=dict)

    def get(self, message_id: str) -> StoredReply | None:
        return self.replies.get(message_id)

    async def put(self, message_id: str, reply: StoredReply) -> None:
        self.replies[message_id] = reply


@dataclass
class KafkaReplyStore:
    """Remembers replies in the compacted topic `mbs.dedup.<unit>`; `load()` reads it back."""

    broker: KafkaBroker
    bootstrap: str
    unit: str
    replies: dict[str, StoredReply] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        return f"mbs.dedup.{self.unit}"

    def get(self, message_id: str) -> StoredReply | None:
        return self.replies.get(message_id)

    async def put(self, message_id: str, reply: StoredReply) -> None:
        await self.broker.publish(reply.encode(), self.topic, key=message_id.encode())
        self.replies[message_id] = reply

    async def load(self) -> int:
        """Read the whole topic; returns how many replies are remembered."""
        await ensure_topics(self.bootstrap, [self.topic], partitions=1, config=STORE_CONFIG)
        tp = TopicPartition(self.topic, 0)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            # an explicit seek: seek_to_beginning() + position() reported the end here
            position = (await consumer.beginning_offsets([tp]))[tp]
            consumer.seek(tp, position)
            while position < end:
                for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    if record.key and record.value:
                        self.replies[record.key.decode()] = StoredReply.decode(record.value)
                    position = record.offset + 1
        finally:
            await consumer.stop()
        return len(self.replies)
