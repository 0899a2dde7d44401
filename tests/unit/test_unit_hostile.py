"""Hostile records on a unit's request topic, in memory: whatever a writer puts there, the
unit dead-letters what it cannot serve (original bytes, reason, where it lay) and serves the
next request. Found by tests/e2e/test_fuzz_topics.py, which throws the same at real Kafka.

Records are handed to the unit's subscriber as the Kafka client delivers them (header values
are bytes or None), since FastStream's test client only publishes text headers."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from faststream.kafka import KafkaBroker, KafkaMessage, TestKafkaBroker

from mbs import wire as h
from mbs.kafka import Connection, ReplyReader, Requester, pass_undecodable, text_headers
from mbs.unit import Binding, RetryPolicy, Unit
from mbs.unit.intake import keep_bytes
from tests import unit_kit_cases as cases

Raw = list[tuple[str, bytes | None]]


@pytest.fixture
async def flaky(uid: str) -> AsyncIterator[tuple[cases.Harness, cases.Flaky]]:
    """A unit whose handler counts its calls (a side effect would be one); its replies and
    dead letters are captured as bytes (in memory, a capturing subscriber runs inside the
    unit's publish: FastStream's JSON decoding of a hostile copy would raise in the unit)."""
    broker, handler = KafkaBroker(), cases.Flaky(0)
    contract = cases.contract_for(uid)
    unit = Unit(contract.unit, [Binding(contract, handler.quote)], retry=RetryPolicy(3, 0.01))
    harness = cases.Harness(broker, contract, unit)
    unit.attach(broker)

    async def on_reply(msg: KafkaMessage) -> None:
        await harness.replies.put((msg.body, dict(msg.headers)))

    async def on_dead(msg: KafkaMessage) -> None:
        await harness.dead.put((msg.body, dict(msg.headers)))

    for topic, capture in ((contract.reply_topic, on_reply), (contract.dlq_topic, on_dead)):
        broker.subscriber(topic, group_id=f"test-{uid}-{topic}", decoder=keep_bytes)(capture)
    async with TestKafkaBroker(broker):
        yield harness, handler


def record(topic: str, value: bytes | None, headers: Raw, offset: int = 7) -> ConsumerRecord:
    size = 0 if value is None else len(value)
    return ConsumerRecord(topic, 1, offset, 0, 0, None, value, None, 0, size, headers)


def identity() -> Raw:
    return [(h.MESSAGE_ID, uuid.uuid4().hex.encode()), (h.CORRELATION_ID, b"c-1")]


def request_subscriber(harness: cases.Harness) -> Any:
    """The FastStream subscriber of the unit's request topic."""
    topic = harness.contract.request_topic
    return next(s for s in harness.broker.subscribers if topic in getattr(s, "topic_names", ()))


async def deliver(harness: cases.Harness, value: bytes | None, headers: Raw) -> None:
    """As the unit's consumer loop does it: parser, middlewares, handler."""
    topic = harness.contract.request_topic
    await request_subscriber(harness).process_message(record(topic, value, headers))


async def still_serving(harness: cases.Harness) -> None:
    correlation = await harness.send(cases.valid())
    while True:
        _, hdrs = await harness.reply()
        if hdrs[h.CORRELATION_ID] == correlation:
            break
    assert h.ERROR not in hdrs


BAD_HEADERS: list[tuple[Raw, str]] = [
    ([(h.MESSAGE_ID, b"\xff\xfe"), (h.CORRELATION_ID, b"c-1")], "mbs-message-id is not UTF-8"),
    ([(h.MESSAGE_ID, b"m-1"), (h.CORRELATION_ID, None)], "mbs-correlation-id has no value"),
    ([*identity(), (h.TRACEPARENT, b"00-\x80")], "traceparent is not UTF-8"),
    ([*identity(), (h.MESSAGE_ID, b"another")], "mbs-message-id is given more than once"),
    ([*identity(), (h.DEADLINE, b"soon")], "is not epoch milliseconds"),
    ([*identity(), (h.DEADLINE, b"12.5")], "is not epoch milliseconds"),
    ([*identity(), (h.DEADLINE, b"-5")], "is not epoch milliseconds"),
    ([*identity(), (h.DEADLINE, "²".encode())], "is not epoch milliseconds"),  # isdigit()!
    ([*identity(), (h.DEADLINE, b"9" * 5000)], "is not epoch milliseconds"),  # int() refuses
    ([*identity(), (h.DEADLINE, b"\xff")], "mbs-deadline is not UTF-8"),
    ([*identity(), (h.SHADOW, b"true")], "is neither 0 nor 1"),
    ([*identity(), (h.SHADOW, b"1\x00garbage")], "is neither 0 nor 1"),
]


@pytest.mark.parametrize(("headers", "detail"), BAD_HEADERS)
async def test_a_valid_request_with_a_broken_header_is_dead_lettered_never_run(
    flaky: tuple[cases.Harness, cases.Flaky], headers: Raw, detail: str
) -> None:
    """The most dangerous kind: the body would be served, the header says something the unit
    cannot honour (who is asking, by when, for real or as a dry run)."""
    harness, handler = flaky
    body = cases.valid()
    await deliver(harness, body, headers)
    dead_body, dead = await harness.dead_letter()
    assert (dead_body, dead[h.ERROR]) == (body, "bad_header")
    assert detail in dead[h.ERROR_DETAIL]
    topic = harness.contract.request_topic
    assert (dead["mbs-source-topic"], dead["mbs-source-partition"]) == (topic, "1")
    assert dead["mbs-source-offset"] == "7"
    assert handler.calls == 0, "never started: no side effect"
    await still_serving(harness)


async def test_a_repeated_header_saying_the_same_is_no_problem(
    flaky: tuple[cases.Harness, cases.Flaky],
) -> None:
    harness, handler = flaky
    message_id = uuid.uuid4().hex.encode()
    headers: Raw = [(h.MESSAGE_ID, message_id), (h.MESSAGE_ID, message_id)]
    await deliver(harness, cases.valid(), [*headers, (h.CORRELATION_ID, b"c-2")])
    _, reply = await harness.reply()
    assert (reply.get(h.ERROR), handler.calls) == (None, 1)


async def test_a_foreign_binary_header_is_the_senders_business(
    flaky: tuple[cases.Harness, cases.Flaky],
) -> None:
    """Kafka headers are bytes; another platform's binary header does not make a request bad."""
    harness, handler = flaky
    await deliver(harness, cases.valid(), [*identity(), ("x-trace-bin", b"\xff\x00"), ("x", None)])
    _, reply = await harness.reply()
    assert (reply.get(h.ERROR), handler.calls) == (None, 1)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "not_json"),  # a tombstone
        (b"", "not_json"),
        (b"\xff\xfe\x00garbage", "not_json"),
        (b"[1, 2, 3]", "schema_invalid"),
        (b'{"unexpected": true}', "schema_invalid"),
        (json.dumps({"charge_id": "ch-1"}).encode(), "schema_invalid"),  # another capability's
        (b"[" * 50_000 + b"]" * 50_000, "not_json"),  # json.loads: RecursionError
        (b'{"sku": "grinder-c40", "quantity": ' + b"9" * 5000 + b"}", "not_json"),  # ValueError
    ],
)
async def test_a_body_the_unit_cannot_read_is_dead_lettered(
    flaky: tuple[cases.Harness, cases.Flaky], value: bytes | None, reason: str
) -> None:
    harness, handler = flaky
    await deliver(harness, value, identity())
    dead_body, dead = await harness.dead_letter()
    assert (dead_body, dead[h.ERROR]) == (value or b"", reason)
    _, refused = await harness.reply()
    assert refused[h.ERROR] == "invalid_request", "the caller is told now, not at its timeout"
    assert handler.calls == 0
    await still_serving(harness)


@pytest.mark.parametrize(
    ("content_type", "value"),
    [(b"application/json", b"{not json"), (b"text/plain", b"\xff\xfe")],
)
async def test_a_content_type_header_does_not_make_faststream_parse_the_body(
    flaky: tuple[cases.Harness, cases.Flaky], content_type: bytes, value: bytes
) -> None:
    """FastStream decodes a body by its content-type before any handler runs, and raises."""
    harness, _ = flaky
    await deliver(harness, value, [*identity(), ("content-type", content_type)])
    dead_body, dead = await harness.dead_letter()
    assert (dead_body, dead[h.ERROR]) == (value, "not_json")


async def test_a_far_future_deadline_is_served(flaky: tuple[cases.Harness, cases.Flaky]) -> None:
    harness, handler = flaky
    await deliver(harness, cases.valid(), [*identity(), (h.DEADLINE, b"9" * 15)])
    _, reply = await harness.reply()
    assert (reply.get(h.ERROR), handler.calls) == (None, 1)


class Undecodable:
    """An aiokafka consumer over in-memory partitions that raises as aiokafka does at a record
    it cannot decode (a header name that is not UTF-8): at the same offset on every try,
    without moving past it. A value of None stands for such a record."""

    def __init__(self, topic: str, partitions: dict[int, list[bytes | None]]) -> None:
        self.records = {TopicPartition(topic, p): values for p, values in partitions.items()}
        self.positions = dict.fromkeys(self.records, 0)
        self.committed: dict[TopicPartition, int] = {}
        self.probed: list[TopicPartition] = []
        self._fetcher: Any = None  # aiokafka's, where a test says what it was reading

    def assignment(self) -> set[TopicPartition]:
        return set(self.records)

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.records[tp]) for tp in tps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.update(offsets)

    def _next(self, tp: TopicPartition) -> ConsumerRecord | None:
        offset = self.positions[tp]
        if offset >= len(self.records[tp]):
            return None
        value = self.records[tp][offset]
        if value is None:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        self.positions[tp] = offset + 1
        headers = [(h.CORRELATION_ID, value)]
        return ConsumerRecord(
            tp.topic, tp.partition, offset, 0, 0, None, value, None, 0, 0, headers
        )

    async def getmany(
        self, *tps: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        self.probed += tps
        found = {tp: self._next(tp) for tp in tps or sorted(self.records)}
        return {tp: [r] for tp, r in found.items() if r is not None}

    async def getone(self) -> ConsumerRecord:
        for tp in sorted(self.records):
            found = self._next(tp)
            if found is not None:
                return found
        await asyncio.Event().wait()  # as a real consumer: wait for more
        raise AssertionError("unreachable")


async def test_stepping_over_undecodable_records_keeps_every_other_record() -> None:
    consumer = Undecodable("t", {0: [b"a", None, None, b"b"], 1: [b"c"]})
    assert (await consumer.getone()).value == b"a"
    with pytest.raises(UnicodeDecodeError):
        await consumer.getone()
    skipped = await pass_undecodable(consumer)
    assert [(s.partition, s.offset) for s in skipped] == [(0, 1), (0, 2)]
    assert "offsets 1 to 2" in skipped[0].reason
    rest = [(await consumer.getone()).value for _ in range(2)]
    assert sorted(rest) == [b"b", b"c"], "the readable partition is put back where it was"


async def test_the_partition_aiokafka_was_reading_is_tried_first_and_alone() -> None:
    """Trying a partition costs a fetch (0.1 s): with 24 reply partitions a gateway fell 10 s
    behind on its replies while stepping over five records."""
    consumer = Undecodable("t", {0: [b"a"], 1: [None, b"b"], 2: [b"c"]})
    bad = TopicPartition("t", 1)
    consumer._fetcher = SimpleNamespace(_records={bad: "what aiokafka was reading"})
    skipped = await pass_undecodable(consumer)
    assert [(s.partition, s.offset) for s in skipped] == [(1, 0)]
    assert set(consumer.probed) == {bad}, "the others were left alone"


async def test_a_record_the_client_cannot_decode_is_dead_lettered_and_committed_past(
    flaky: tuple[cases.Harness, cases.Flaky],
) -> None:
    """Without the guard FastStream restarts its consume loop on the same record, thousands of
    times a second, before and after every restart of the unit."""
    harness, _ = flaky
    topic = harness.contract.request_topic
    subscriber = request_subscriber(harness)
    consumer = Undecodable(topic, {0: [None, b"after"]})
    assert await subscriber.get_msg(consumer) is None, "stepped over, not raised"
    dead_body, dead = await harness.dead_letter()
    assert (dead_body, dead[h.ERROR], dead[h.UNIT]) == (b"", "unreadable", harness.contract.unit)
    assert (dead["mbs-source-topic"], dead["mbs-source-offset"]) == (topic, "0")
    assert consumer.committed == {TopicPartition(topic, 0): 1}, "a restart starts past it"
    assert (await subscriber.get_msg(consumer)).value == b"after"


def test_reply_headers_are_text_whatever_their_bytes() -> None:
    raw: Raw = [("a", None), ("b", b"\xff"), ("c", b"ok")]
    assert text_headers(raw) == {"a": "", "b": "\\xff", "c": "ok"}


async def test_no_reply_record_stops_the_requester() -> None:
    """The requester's reader is how every reply comes in: a header without a value (which
    used to end it with AttributeError) or a record aiokafka cannot decode must not end it."""
    requester = Requester(Connection("127.0.0.1:1"), caller="test")
    consumer = Undecodable("mbs.replies.x", {0: [None, b"other"], 1: [b"wanted"]})
    consumer.records[TopicPartition("mbs.replies.x", 0)].insert(0, b"first")
    waiting: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    requester._pending["wanted"] = waiting
    requester._sent_at["wanted"] = 0.0
    replies = ReplyReader(Connection("127.0.0.1:1"), requester._take)
    null_header = record("mbs.replies.x", b"{}", [(h.CORRELATION_ID, None)])
    original = consumer.getone
    served = iter([null_header])

    async def getone() -> ConsumerRecord:
        return next(served, None) or await original()

    consumer.getone = getone  # type: ignore[method-assign]
    reader = asyncio.create_task(replies._read(consumer, track=True))
    try:
        reply = await asyncio.wait_for(waiting, 5)
    finally:
        reader.cancel()
    assert reply.body == b"wanted"
    assert replies.records_read == 5, "every record fetched is counted, kept or not"
    assert not reader.done() or reader.cancelled(), "the reader was still running"
