"""What a unit takes off its request topics, before the server judges it.

Anyone allowed to write a request topic may write anything to it, and a unit must get past
every record: a record it cannot use goes to its dead-letter topic with the reason, and the
next one is served. FastStream alone does not: a header value that is not UTF-8 (or none at
all) makes its parser raise, so the record is dropped unseen with a traceback; a header *name*
that is not UTF-8 makes aiokafka raise on every fetch, so the consumer restarts in a busy loop
and never gets past the record, before and after every restart of the unit. Here:

- `parse_leniently` hands FastStream headers it can decode, keeping the record as it came in
  `raw_message`; `read_headers` then reads the real bytes and says what is wrong with them;
- `keep_bytes` stops FastStream from parsing the body itself (it raises on some JSON);
  `the_message` does too, and hands the handler the whole message as its argument, so
  nothing is injected (FastStream resolves an injected message in a worker thread, a thread
  hop per request);
- `guard` steps over records the client cannot decode (`mbs.kafka.undecodable`, the one
  mechanism every platform reader uses),
  dead-letters each and commits past them, so a restart does not meet them again.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaMessage
from faststream.message import StreamMessage

from mbs import wire as h
from mbs.kafka.undecodable import UNDECODABLE, Skipped, pass_undecodable

log = logging.getLogger("mbs.unit")
RawHeaders = Sequence[tuple[str, bytes | None]]
# Headers the kit reads or passes on: each must be UTF-8 text, and say one thing.
_TRACING = frozenset({h.TRACEPARENT, "tracestate", "baggage"})
_DEADLINE = re.compile(r"[0-9]{1,15}")  # epoch ms; 15 digits reach the year 33658
_SHADOW = frozenset({"0", "1"})
_PARTITION = re.compile(r"[0-9]{1,9}")  # a Kafka partition number (an int32)


@dataclass(frozen=True)
class Headers:
    """A request's headers: those the kit may trust, every one as shown in a dead letter, and
    what is wrong with them (a request with problems is not served)."""

    text: dict[str, str]
    shown: dict[str, str]
    problems: list[str] = field(default_factory=list)


def _platform(name: str) -> bool:
    return name.startswith("mbs-") or name in _TRACING


def read_headers(raw: RawHeaders) -> Headers:
    """Judge the headers by their bytes. A platform header (`mbs-*`, tracing) must be UTF-8
    text and, if repeated, say the same each time; `mbs-deadline` must be epoch milliseconds,
    `mbs-shadow` `0` or `1` and `mbs-reply-partition` digits, else the unit could not honour
    them. Other headers are the sender's business: kept if they are text, ignored if not."""
    text: dict[str, str] = {}
    shown: dict[str, str] = {}
    problems: list[str] = []
    for name, value in raw:
        shown[name] = (value or b"").decode(errors="backslashreplace")
        platform = _platform(name)
        if value is None:
            if platform:
                problems.append(f"{name} has no value")
            continue
        try:
            decoded = value.decode()
        except UnicodeDecodeError:
            if platform:
                problems.append(f"{name} is not UTF-8 text: {value[:40]!r}")
            continue
        if platform and text.get(name, decoded) != decoded:
            problems.append(f"{name} is given more than once, with different values")
        text[name] = decoded
    deadline = text.get(h.DEADLINE)
    if deadline is not None and not _DEADLINE.fullmatch(deadline):
        problems.append(f"{h.DEADLINE} {deadline[:40]!r} is not epoch milliseconds")
    shadow = text.get(h.SHADOW)
    if shadow is not None and shadow not in _SHADOW:
        problems.append(f"{h.SHADOW} {shadow[:40]!r} is neither 0 nor 1")
    partition = text.get(h.REPLY_PARTITION)
    if partition is not None and not _PARTITION.fullmatch(partition):
        problems.append(f"{h.REPLY_PARTITION} {partition[:40]!r} is not a partition number")
    return Headers(text, shown, sorted(set(problems)))


def reply_partition(hdrs: dict[str, str]) -> int | None:
    """The reply partition a request names (`mbs-reply-partition`), if it names a valid one."""
    value = hdrs.get(h.REPLY_PARTITION, "")
    return int(value) if _PARTITION.fullmatch(value) else None


def raw_headers(msg: KafkaMessage) -> RawHeaders:
    """The record's own header bytes (FastStream's `msg.headers` are only what it decoded)."""
    record = msg.raw_message
    if isinstance(record, ConsumerRecord):
        return list(record.headers)
    return [(name, str(value).encode()) for name, value in msg.headers.items()]


async def parse_leniently(
    record: ConsumerRecord[bytes, bytes],
    original: Callable[[ConsumerRecord[bytes, bytes]], Awaitable[StreamMessage[Any]]],
) -> StreamMessage[Any]:
    """FastStream's parser, given headers it can decode; the message keeps the record as it
    came (its `raw_message`), so the server judges the real bytes."""
    clean = copy.copy(record)  # keeps the consumer FastStream attached to the record
    clean.headers = [
        (name, (value or b"").decode(errors="backslashreplace").encode())
        for name, value in record.headers
    ]
    message = await original(clean)
    message.raw_message = record
    return message


async def keep_bytes(message: StreamMessage[Any]) -> bytes:
    """The body as it came, for the server to parse. FastStream's own decoder parses JSON
    before any handler runs, and raises (the record dropped unseen) on a body nested too
    deeply, a number longer than `int()` takes, or anything not JSON under a
    `content-type: application/json` header."""
    body: bytes = message.body
    return body


OnSkipped = Callable[[Skipped], Awaitable[None]]


def guard(subscriber: Any, on_skipped: OnSkipped) -> None:
    """Let `subscriber` (a FastStream Kafka subscriber) get past records the Kafka client
    cannot decode: each is handed to `on_skipped` (which dead-letters it), then the group's
    offset is committed past it. Without this, FastStream restarts its consume loop on the
    same record forever."""
    original = subscriber.get_msg

    async def get_msg(consumer: AIOKafkaConsumer) -> Any:
        try:
            return await original(consumer)
        except UNDECODABLE as exc:
            log.warning("a request the Kafka client cannot decode (%r): stepping over it", exc)
            skipped = await pass_undecodable(consumer)
            past: dict[TopicPartition, int] = {}
            for record in skipped:
                await on_skipped(record)
                past[TopicPartition(record.topic, record.partition)] = record.offset + 1
            try:
                if past:
                    await consumer.commit(past)
            except KafkaError as error:  # a rebalance: the next owner may skip them again
                log.warning("could not commit past the skipped records (%r)", error)
            return None  # FastStream's loop asks again

    subscriber.get_msg = get_msg


async def the_message(message: StreamMessage[Any]) -> StreamMessage[Any]:
    """The message itself as the handler's argument, the body unparsed (see `keep_bytes`)."""
    return message
