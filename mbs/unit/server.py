"""The whole path of one request message through a unit (the kit's side of a handler).

The rule partners and the gateway rely on: the answer to a message id is final once given
(ok, a business error, or `deadline_exceeded`); a repeat of the message id, on any instance,
before or after a restart, gets the same answer and never runs the handler again; a request
whose deadline passed before it was started is never done. So the check for a remembered
answer, the deadline check, the handler's writes and the remembered reply share one
transaction of the unit's store, and the reply is sent only after it commits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError
from faststream.exceptions import NackMessage
from faststream.kafka import KafkaBroker, KafkaMessage
from pydantic import BaseModel, ValidationError

from mbs import wire as h
from mbs.errors import BusinessError, ContractViolation
from mbs.kafka.undecodable import Skipped
from mbs.telemetry.meter import UnitMeter
from mbs.unit.binding import Binding, RetryPolicy
from mbs.unit.context import serving_dry_run
from mbs.unit.intake import Headers, raw_headers, read_headers, reply_partition
from mbs.unit.state import StoredReply, Transaction, UnitStore

log = logging.getLogger("mbs.unit")
MAX_MESSAGE_BYTES = 1_000_000
REDELIVERY_PAUSE_S = 0.5
REQUIRED_HEADERS = (h.MESSAGE_ID, h.CORRELATION_ID)
# Where a dead letter came from (the names the platform's quarantine uses too).
SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET = (
    "mbs-source-topic",
    "mbs-source-partition",
    "mbs-source-offset",
)
_PASSTHROUGH = (h.JOURNEY_ID, h.JOURNEY, h.STEP, h.ATTEMPT, h.TRACEPARENT, h.SHADOW)
CpuClock = Callable[[], int]
"""CPU time in nanoseconds (`time.process_time_ns`); a test hands in one it controls."""


@dataclass(frozen=True)
class Incoming:
    """A request record as it came: its bytes, its headers judged, and where it lies."""

    raw: bytes
    headers: Headers
    source: dict[str, str]

    @property
    def hdrs(self) -> dict[str, str]:
        """The headers the kit trusts (the rest make the request invalid)."""
        return self.headers.text

    @classmethod
    def of(cls, msg: KafkaMessage) -> Incoming:
        record = msg.raw_message
        source = {}
        if not isinstance(record, tuple):
            source = {
                SOURCE_TOPIC: record.topic,
                SOURCE_PARTITION: str(record.partition),
                SOURCE_OFFSET: str(record.offset),
            }
        return cls(msg.body, read_headers(raw_headers(msg)), source)


@dataclass(frozen=True)
class Answer:
    """A reply ready to send, and what it means for the unit's metrics."""

    reply: StoredReply
    outcome: str
    cost: Decimal = Decimal(0)
    price: Decimal = Decimal(0)
    handler_s: float | None = None
    replayed: bool = False


class Server:
    """Serves one binding of one unit."""

    def __init__(
        self,
        unit: str,
        binding: Binding,
        retry: RetryPolicy,
        broker: KafkaBroker,
        store: UnitStore,
        *,
        cpu_clock: CpuClock = time.process_time_ns,
    ) -> None:
        self.unit = unit
        self.contract = binding.contract
        self.handler = binding.handler
        self.retry = retry
        self.broker = broker
        self.store = store
        self.meter = UnitMeter(unit, self.contract)
        self.cpu_clock = cpu_clock

    async def on_message(self, msg: KafkaMessage) -> None:
        incoming = Incoming.of(msg)
        hdrs = incoming.hdrs
        try:
            request = self._parse(incoming)
        except ContractViolation as bad:
            await self._reject(incoming, bad)
            return
        if hdrs.get(h.SHADOW) == "1":
            await self._shadow(incoming, request)
            return
        answer = await self._attempt(incoming, request, shadow=False)
        if answer is not None:
            await self._send_final(answer, hdrs)

    async def undecodable(self, skipped: Skipped) -> None:
        """A record the Kafka client cannot decode: dead-lettered without its bytes (they stay
        in the request topic, at the offset the dead letter names)."""
        source = {
            SOURCE_TOPIC: skipped.topic,
            SOURCE_PARTITION: str(skipped.partition),
            SOURCE_OFFSET: str(skipped.offset),
        }
        incoming = Incoming(b"", Headers({}, {}), source)
        await self._dead_letter(incoming, "unreadable", skipped.reason)
        self.meter.counted("invalid")

    def _parse(self, incoming: Incoming) -> BaseModel:
        raw, hdrs = incoming.raw, incoming.hdrs
        if len(raw) > MAX_MESSAGE_BYTES:
            raise ContractViolation("too_large", f"{len(raw)} bytes > {MAX_MESSAGE_BYTES}")
        if incoming.headers.problems:
            raise ContractViolation("bad_header", "; ".join(incoming.headers.problems))
        missing = [name for name in REQUIRED_HEADERS if not hdrs.get(name)]
        if missing:
            raise ContractViolation("missing_header", f"required headers missing: {missing}")
        try:
            data = json.loads(raw)
        except RecursionError as exc:  # `[[[[...` deep enough for the parser to give up
            raise ContractViolation("not_json", f"nested too deeply: {exc}") from exc
        except ValueError as exc:  # not JSON, not UTF-8, or a number beyond int()'s 4300 digits
            raise ContractViolation("not_json", str(exc)) from exc
        try:
            return self.contract.request_model.model_validate(data)
        except ValidationError as exc:
            raise ContractViolation("schema_invalid", _errors(exc)) from exc

    async def _reject(self, incoming: Incoming, bad: ContractViolation) -> None:
        await self._dead_letter(incoming, bad.reason, bad.detail)
        hdrs = incoming.hdrs
        if hdrs.get(h.CORRELATION_ID):  # tell a waiting caller now, not at its timeout
            await self._error(hdrs, "invalid_request", str(bad), "invalid")
        else:
            self.meter.counted("invalid")

    async def _shadow(self, incoming: Incoming, request: BaseModel) -> None:
        """A dry run: the handler runs in a transaction that is rolled back, never remembered."""
        hdrs = incoming.hdrs
        if _expired(hdrs):
            await self._error(hdrs, "deadline_exceeded", _late(hdrs), "failed")
            return
        if not self.contract.supports_dry_run:
            detail = f"{self.contract.capability} declares no dry run"
            await self._error(hdrs, "dry_run_unsupported", detail, "shadow")
            return
        with serving_dry_run():
            answer = await self._attempt(incoming, request, shadow=True)
        if answer is not None:
            self._account(answer, hdrs)
            await self._publish(answer.reply.body, dict(answer.reply.headers), hdrs)

    async def _attempt(
        self, incoming: Incoming, request: BaseModel, *, shadow: bool
    ) -> Answer | None:
        """The answer, committed; a technical failure rolls back and is retried, then
        dead-lettered and answered `unit_failed`, which is not remembered (a re-send runs)."""
        policy, hdrs = self.retry, incoming.hdrs
        for attempt in range(1, policy.attempts + 1):
            try:
                async with self.store.transaction(rollback_only=shadow) as tx:
                    return await self._decide(tx, hdrs, request, shadow=shadow)
            except Exception as exc:
                log.warning("%s attempt %d failed: %r", self.contract.capability, attempt, exc)
                if attempt < policy.attempts:
                    await asyncio.sleep(policy.backoff.delay(attempt))
                    continue
                await self._dead_letter(incoming, "handler_failed", repr(exc))
                await self._error(hdrs, "unit_failed", repr(exc), "failed")
        return None

    async def _decide(
        self, tx: Transaction, hdrs: dict[str, str], request: BaseModel, *, shadow: bool
    ) -> Answer:
        if shadow:
            return await self._run(hdrs, request, outcome="shadow")
        message_id = hdrs[h.MESSAGE_ID]
        remembered = tx.reply(message_id)
        if remembered is not None:  # a repeat: the same answer, no second side effect
            return Answer(remembered, "replayed", replayed=True)
        if _expired(hdrs):  # never started, never done: that is the final answer
            answer = self._answer(hdrs, None, "failed", error=("deadline_exceeded", _late(hdrs)))
        else:
            answer = await self._run(hdrs, request, outcome="ok")
        answer.reply.headers[h.REQUEST_ID] = message_id  # says: this answer is final
        tx.remember(message_id, answer.reply)
        return answer

    async def _run(self, hdrs: dict[str, str], request: BaseModel, *, outcome: str) -> Answer:
        """Run the handler; a business error is an answer too, and its CPU cost as much."""
        started_cpu, started = self.cpu_clock(), time.perf_counter()
        try:
            reply = await self.handler(request)
        except BusinessError as err:
            failed = "business_error" if outcome == "ok" else outcome
            elapsed, cpu_ns = time.perf_counter() - started, self.cpu_clock() - started_cpu
            error = (err.code, err.detail)
            return self._answer(hdrs, None, failed, error=error, cpu_ns=cpu_ns, seconds=elapsed)
        elapsed, cpu_ns = time.perf_counter() - started, self.cpu_clock() - started_cpu
        return self._answer(hdrs, reply, outcome, cpu_ns=cpu_ns, seconds=elapsed)

    def _answer(
        self,
        hdrs: dict[str, str],
        reply: BaseModel | None,
        outcome: str,
        *,
        error: tuple[str, str] | None = None,
        cpu_ns: int = 0,
        seconds: float | None = None,
    ) -> Answer:
        """The reply's body and headers, with cost and price from the contract, written
        exactly (a rounded header would disagree with the unit's own metrics)."""
        cost = self.meter.cost(cpu_ns)
        price = self.meter.price(billed=error is None and hdrs.get(h.SHADOW) != "1")
        out = {
            h.MESSAGE_ID: uuid.uuid4().hex,
            h.CORRELATION_ID: hdrs.get(h.CORRELATION_ID, ""),
            h.UNIT: self.unit,
            h.COST: format(cost, "f"),
            h.PRICE: format(price, "f"),
            h.HANDLER_MS: f"{(seconds or 0.0) * 1000:.3f}",
        }
        if error is not None:
            out[h.ERROR], out[h.ERROR_DETAIL] = error[0], error[1][:500]
        body = b"{}" if reply is None else reply.model_dump_json().encode()
        return Answer(StoredReply(body, out), outcome, cost, price, seconds)

    async def _send_final(self, answer: Answer, hdrs: dict[str, str]) -> None:
        """Send a committed answer. If that fails, the request is not acknowledged: Kafka
        redelivers it, and the redelivery is answered from the store, the handler not rerun."""
        if not answer.replayed:
            self._account(answer, hdrs)
        out = {**answer.reply.headers, h.CORRELATION_ID: hdrs[h.CORRELATION_ID]}
        try:
            await self._publish(answer.reply.body, out, hdrs)
        except Exception as exc:
            log.warning(
                "%s: reply to %s not sent (%r); it is sent again on redelivery",
                self.contract.capability,
                hdrs[h.MESSAGE_ID],
                exc,
            )
            await asyncio.sleep(REDELIVERY_PAUSE_S)
            raise NackMessage from exc

    async def _error(self, hdrs: dict[str, str], code: str, detail: str, outcome: str) -> None:
        """An answer that is not final and not remembered (invalid, failed, refused dry run)."""
        answer = self._answer(hdrs, None, outcome, error=(code, detail))
        self._account(answer, hdrs)
        await self._publish(answer.reply.body, answer.reply.headers, hdrs)

    def _account(self, answer: Answer, hdrs: dict[str, str]) -> None:
        """Report an answer to the unit's meter, once it is committed."""
        self.meter.answered(
            answer.outcome,
            cost=answer.cost,
            price=answer.price,
            handler_s=answer.handler_s,
            error=answer.reply.headers.get(h.ERROR),
            shadow=hdrs.get(h.SHADOW) == "1",
        )

    async def _publish(self, body: bytes, out: dict[str, str], hdrs: dict[str, str]) -> None:
        """To the reply topic, keyed by journey, on the partition the caller reads when the
        request names one (each gateway instance reads only its own reply partitions)."""
        for name in _PASSTHROUGH:
            if name in hdrs:
                out[name] = hdrs[name]
        topic, key, partition = self.contract.reply_topic, _key(hdrs), reply_partition(hdrs)
        if partition is not None:
            try:
                await self.broker.publish(body, topic, key=key, headers=out, partition=partition)
                return
            except AssertionError:  # aiokafka's refusal of a partition the topic does not have
                log.warning("%s has no partition %d: replying by key", topic, partition)
        await self.broker.publish(body, topic, key=key, headers=out)

    async def _dead_letter(self, incoming: Incoming, reason: str, detail: str) -> None:
        """The original bytes and headers (escaped where not text), the reason, and where the
        record lies; a copy too large to write goes without its bytes, which stay in place."""
        where = incoming.source.get(SOURCE_OFFSET, "?")
        log.warning("%s@%s -> DLQ (%s): %s", self.contract.capability, where, reason, detail)
        self.meter.dead_lettered(reason)
        out = {
            **incoming.headers.shown,
            **incoming.source,
            h.ERROR: reason,
            h.ERROR_DETAIL: detail[:1000],
            h.UNIT: self.unit,
        }
        key, topic = _key(incoming.hdrs), self.contract.dlq_topic
        try:
            await self.broker.publish(incoming.raw, topic, key=key, headers=out)
        except (MessageSizeTooLargeError, RecordTooLargeError) as exc:
            out[h.ERROR_DETAIL] = (
                f"{detail[:500]} (its {len(incoming.raw)} bytes not copied: {exc!r})"
            )
            await self.broker.publish(b"", topic, key=key, headers=out)


def _expired(hdrs: dict[str, str]) -> bool:
    deadline = hdrs.get(h.DEADLINE, "")  # epoch ms if present (`read_headers` checked it)
    return deadline.isascii() and deadline.isdigit() and int(deadline) < time.time() * 1000


def _late(hdrs: dict[str, str]) -> str:
    return f"deadline {hdrs.get(h.DEADLINE)} passed before the request was started"


def _key(hdrs: dict[str, str]) -> bytes | None:
    journey = hdrs.get(h.JOURNEY_ID)
    return journey.encode() if journey else None


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
    )
