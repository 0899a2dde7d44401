"""One set of unit-kit scenarios, run in memory (TestKafkaBroker) and on the real broker."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from faststream.kafka import KafkaBroker, KafkaMessage

from contracts.pricing import QUOTE, Quote
from mbs import BusinessError, ModelContract, implement
from mbs import wire as h
from mbs.unit import Binding, Handler, RetryPolicy, Unit
from services.pricing.handlers import quote


def contract_for(uid: str) -> ModelContract[Any, Any]:
    """The pricing contract under a unique unit and capability name."""
    renamed = QUOTE.model_copy(update={"unit": f"t{uid}", "capability": f"t{uid}.quote"})
    return implement(renamed, request=QUOTE.request_model, reply=QUOTE.reply_model)


@dataclass
class Harness:
    """A unit on a broker, plus queues that capture its replies and dead letters."""

    broker: KafkaBroker
    contract: ModelContract[Any, Any]
    unit: Unit
    replies: asyncio.Queue[tuple[bytes, dict[str, str]]] = field(default_factory=asyncio.Queue)
    dead: asyncio.Queue[tuple[bytes, dict[str, str]]] = field(default_factory=asyncio.Queue)
    reply_partitions: list[int] = field(default_factory=list)  # of each reply, as it came

    async def send(self, body: bytes, **headers: str) -> str:
        correlation = uuid.uuid4().hex
        hdrs = {h.MESSAGE_ID: uuid.uuid4().hex, h.CORRELATION_ID: correlation, **headers}
        hdrs = {k: v for k, v in hdrs.items() if v != "<omit>"}
        await self.broker.publish(body, self.contract.request_topic, headers=hdrs)
        return correlation

    async def reply(self, timeout_s: float = 20.0) -> tuple[bytes, dict[str, str]]:
        return await asyncio.wait_for(self.replies.get(), timeout_s)

    async def dead_letter(self, timeout_s: float = 20.0) -> tuple[bytes, dict[str, str]]:
        return await asyncio.wait_for(self.dead.get(), timeout_s)


def build_harness(broker: KafkaBroker, uid: str) -> Harness:
    return build_harness_with(broker, uid, quote)


def build_harness_with(broker: KafkaBroker, uid: str, handler: Handler) -> Harness:
    contract = contract_for(uid)
    unit = Unit(contract.unit, [Binding(contract, handler)], retry=RetryPolicy(3, 0.01))
    harness = Harness(broker, contract, unit)
    unit.attach(broker)

    async def on_reply(msg: KafkaMessage) -> None:
        harness.reply_partitions.append(getattr(msg.raw_message, "partition", -1))
        await harness.replies.put((msg.body, dict(msg.headers)))

    async def on_dead(msg: KafkaMessage) -> None:
        await harness.dead.put((msg.body, dict(msg.headers)))

    for topic, capture in ((contract.reply_topic, on_reply), (contract.dlq_topic, on_dead)):
        broker.subscriber(topic, group_id=f"test-{uid}-{topic}", auto_offset_reset="earliest")(
            capture
        )
    return harness


def valid() -> bytes:
    return json.dumps({"sku": "grinder-c40", "quantity": 2}).encode()


async def case_valid_request_gets_priced_reply(harness: Harness) -> None:
    correlation = await harness.send(valid(), **{h.JOURNEY_ID: "j-1"})
    body, hdrs = await harness.reply()
    assert hdrs[h.CORRELATION_ID] == correlation
    assert hdrs[h.UNIT] == harness.contract.unit
    assert hdrs[h.JOURNEY_ID] == "j-1"
    assert h.ERROR not in hdrs
    assert float(hdrs[h.PRICE]) == float(harness.contract.pricing.price_per_call)
    assert float(hdrs[h.COST]) >= float(harness.contract.pricing.cost_per_call)
    assert Quote.model_validate_json(body).total == 498


async def case_bad_input_is_dead_lettered_and_unit_keeps_serving(
    harness: Harness, body: bytes, headers: dict[str, str], reason: str, detail: str
) -> None:
    await harness.send(body, **headers)
    dead_body, dead_headers = await harness.dead_letter()
    assert dead_body == body, "the original bytes must be kept"
    assert dead_headers[h.ERROR] == reason
    assert detail in dead_headers[h.ERROR_DETAIL]
    correlation = await harness.send(valid())
    while True:  # skip the invalid_request reply sent for the bad message, if any
        _, hdrs = await harness.reply()
        if hdrs[h.CORRELATION_ID] == correlation:
            break
    assert h.ERROR not in hdrs


BAD_INPUTS = [
    (b"{not json", {}, "not_json", "Expecting property name"),
    (b'{"sku": "grinder-c40", "quantity": 0}', {}, "schema_invalid", "quantity"),
    (b'{"sku": "grinder-c40", "quantity": 1, "colour": "red"}', {}, "schema_invalid", "colour"),
    (
        b'{"sku": "grinder-c40", "quantity": 1}',
        {h.CORRELATION_ID: "<omit>"},
        "missing_header",
        h.CORRELATION_ID,
    ),
    (b" " * 1_000_001, {}, "too_large", "1000001 bytes"),
    (b'{"sku": "grinder-c40", "quantity": 1}', {h.REPLY_PARTITION: "-1"}, "bad_header", "not a"),
]


async def case_business_error_is_a_typed_reply(harness: Harness) -> None:
    await harness.send(json.dumps({"sku": "tamper-58mm", "quantity": 1}).encode())
    body, hdrs = await harness.reply()
    assert hdrs[h.ERROR] == "unknown_sku"
    assert "tamper-58mm" in hdrs[h.ERROR_DETAIL]
    assert body == b"{}"
    assert harness.dead.empty()


async def case_expired_deadline_is_not_processed(harness: Harness) -> None:
    past = str(int(time.time() * 1000) - 1000)
    await harness.send(valid(), **{h.DEADLINE: past})
    _, hdrs = await harness.reply()
    assert hdrs[h.ERROR] == "deadline_exceeded"
    assert float(hdrs[h.PRICE]) == 0


@dataclass
class Flaky:
    """A dependency that fails `failures` times, then answers."""

    failures: int
    calls: int = 0

    async def quote(self, request: Any) -> Quote:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"catalogue database unreachable (call {self.calls})")
        return await quote(request)


async def case_transient_failure_is_retried(harness: Harness, flaky: Flaky) -> None:
    await harness.send(valid())
    _, hdrs = await harness.reply()
    assert h.ERROR not in hdrs
    assert flaky.calls == 3
    assert harness.dead.empty()


async def case_persistent_failure_goes_to_dlq(harness: Harness, flaky: Flaky) -> None:
    body = valid()
    await harness.send(body)
    dead_body, dead_headers = await harness.dead_letter()
    assert dead_body == body
    assert dead_headers[h.ERROR] == "handler_failed"
    assert "catalogue database unreachable" in dead_headers[h.ERROR_DETAIL]
    _, hdrs = await harness.reply()
    assert hdrs[h.ERROR] == "unit_failed"
    assert flaky.calls == 3, "three attempts, then the dead-letter topic"


async def case_redelivery_gets_the_same_reply(harness: Harness, flaky: Flaky) -> None:
    message_id = uuid.uuid4().hex
    await harness.send(valid(), **{h.MESSAGE_ID: message_id})
    first_body, first = await harness.reply()
    await harness.send(valid(), **{h.MESSAGE_ID: message_id})
    again_body, again = await harness.reply()
    assert again_body == first_body
    assert again[h.MESSAGE_ID] == first[h.MESSAGE_ID], "the very same reply, not a new one"
    assert again[h.CORRELATION_ID] != first[h.CORRELATION_ID]
    assert flaky.calls == 1, "the handler ran once"


async def case_shadow_request_is_refused_without_dry_run(harness: Harness) -> None:
    await harness.send(valid(), **{h.SHADOW: "1"})
    _, hdrs = await harness.reply()
    assert hdrs[h.ERROR] == "dry_run_unsupported"
    assert float(hdrs[h.PRICE]) == 0


async def case_passed_deadline_is_the_final_answer(harness: Harness, flaky: Flaky) -> None:
    """Settling an unknown call re-sends it with its old deadline: if it was never done, it
    never will be, whatever deadline a later repeat carries."""
    message_id = uuid.uuid4().hex
    past, future = _epoch_ms(-1000), _epoch_ms(60_000)
    await harness.send(valid(), **{h.MESSAGE_ID: message_id, h.DEADLINE: past})
    _, first = await harness.reply()
    assert first[h.ERROR] == "deadline_exceeded"
    assert first[h.REQUEST_ID] == message_id, "a final, remembered answer"
    await harness.send(valid(), **{h.MESSAGE_ID: message_id, h.DEADLINE: future})
    _, again = await harness.reply()
    assert again[h.ERROR] == "deadline_exceeded"
    assert again[h.MESSAGE_ID] == first[h.MESSAGE_ID], "the very same answer"
    assert flaky.calls == 0, "the handler never ran"


async def case_technical_failure_is_not_remembered(harness: Harness, flaky: Flaky) -> None:
    message_id = uuid.uuid4().hex
    await harness.send(valid(), **{h.MESSAGE_ID: message_id})
    _, failed = await harness.reply()
    assert failed[h.ERROR] == "unit_failed"
    assert h.REQUEST_ID not in failed, "not a final answer"
    await harness.send(valid(), **{h.MESSAGE_ID: message_id})
    _, again = await harness.reply()
    assert h.ERROR not in again, "a re-send of a failed request runs again"
    assert again[h.REQUEST_ID] == message_id
    assert flaky.calls == flaky.failures + 1


@dataclass
class Moody:
    """Refuses the first call with a business error and serves later ones: shows whether the
    refusal is remembered."""

    calls: int = 0

    async def quote(self, request: Any) -> Quote:
        self.calls += 1
        if self.calls == 1:
            raise BusinessError("unknown_sku", "catalogue being updated")
        return await quote(request)


async def case_business_error_is_remembered(harness: Harness, moody: Moody) -> None:
    message_id = uuid.uuid4().hex
    await harness.send(valid(), **{h.MESSAGE_ID: message_id})
    _, first = await harness.reply()
    await harness.send(valid(), **{h.MESSAGE_ID: message_id})
    _, again = await harness.reply()
    assert first[h.ERROR] == again[h.ERROR] == "unknown_sku"
    assert again[h.MESSAGE_ID] == first[h.MESSAGE_ID]
    assert moody.calls == 1, "a business error is an answer: final, not re-tried by a repeat"


class ReplyLosingBroker(KafkaBroker):
    """Loses the first reply it is asked to send, as if the unit crashed right after its
    transaction committed."""

    lose_on: str = ""
    lost: int = 0

    async def publish(self, message: Any = None, topic: str = "", *args: Any, **kw: Any) -> Any:
        if topic == self.lose_on and not self.lost:
            self.lost += 1
            raise ConnectionError("broker connection dropped while sending the reply")
        return await super().publish(message, topic, *args, **kw)


async def case_reply_lost_after_commit_is_sent_again_not_redone(
    harness: Harness, flaky: Flaky, *, redeliver: bool
) -> None:
    """Kafka redelivers the unacknowledged request (in memory nothing does: `redeliver` sends
    it again, headers and all); the handler does not run again and the reply is the one the
    store remembered."""
    assert isinstance(harness.broker, ReplyLosingBroker)
    message_id = uuid.uuid4().hex
    hdrs = {h.MESSAGE_ID: message_id, h.CORRELATION_ID: uuid.uuid4().hex}
    await harness.broker.publish(valid(), harness.contract.request_topic, headers=hdrs)
    if redeliver:
        await harness.broker.publish(valid(), harness.contract.request_topic, headers=hdrs)
    body, reply = await harness.reply()
    assert harness.broker.lost == 1, "the first reply was lost"
    assert flaky.calls == 1, "the handler ran once"
    assert harness.unit.store is not None
    async with harness.unit.store.transaction() as tx:
        remembered = tx.reply(message_id)
    assert remembered is not None
    assert (body, reply[h.MESSAGE_ID]) == (remembered.body, remembered.headers[h.MESSAGE_ID])
    assert reply[h.CORRELATION_ID] == hdrs[h.CORRELATION_ID]
    assert harness.replies.empty()


def _epoch_ms(offset_ms: int) -> str:
    return str(int(time.time() * 1000) + offset_ms)
