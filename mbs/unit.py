"""The unit runtime: binds plain async handlers to their request topics on a FastStream broker.

A handler takes one pydantic model and returns one. The kit validates input (invalid input goes
to the dead-letter topic with its reason, and the unit keeps serving), replies on the unit's
reply topic with correlation and cost headers, turns `BusinessError` into a typed error reply,
and retries technical failures with backoff before dead-lettering them.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from pydantic import BaseModel, ValidationError

from mbs import headers as h
from mbs.contract import ModelContract
from mbs.errors import BusinessError, ContractViolation

log = logging.getLogger("mbs.unit")
_DRY_RUN: contextvars.ContextVar[bool] = contextvars.ContextVar("mbs_dry_run", default=False)


def dry_run() -> bool:
    """True while a handler serves a shadow (`mbs-shadow: 1`) request: change nothing."""
    return _DRY_RUN.get()

Handler = Callable[[Any], Awaitable[BaseModel]]
MAX_MESSAGE_BYTES = 1_000_000
REQUIRED_HEADERS = (h.MESSAGE_ID, h.CORRELATION_ID)


@dataclass(frozen=True)
class Binding:
    """One capability of a unit: its contract and the handler that serves it."""

    contract: ModelContract[Any, Any]
    handler: Handler


@dataclass(frozen=True)
class RetryPolicy:
    """How often a technical failure is retried before the request is dead-lettered."""

    attempts: int = 3
    first_backoff_s: float = 0.05


class Unit:
    """A Micro Business Unit: a name, an owner and the capabilities it serves."""

    def __init__(
        self, name: str, bindings: Sequence[Binding], *, retry: RetryPolicy | None = None
    ) -> None:
        wrong = [b.contract.capability for b in bindings if b.contract.unit != name]
        if wrong:
            raise ContractViolation("unit_mismatch", f"{wrong} are not contracts of unit {name}")
        self.name = name
        self.bindings = list(bindings)
        self.retry = retry or RetryPolicy()

    @property
    def topics(self) -> list[str]:
        """Every topic this unit reads or writes."""
        out = [h.reply_topic(self.name)]
        for binding in self.bindings:
            out += [binding.contract.request_topic, binding.contract.dlq_topic]
        return out

    def attach(self, broker: KafkaBroker) -> None:
        """Subscribe each binding's handler to its request topic."""
        for binding in self.bindings:
            serve = _Server(self, binding, broker)
            broker.subscriber(
                binding.contract.request_topic,
                group_id=f"mbs.unit.{self.name}.{binding.contract.capability}",
                auto_offset_reset="earliest",
                ack_policy=AckPolicy.ACK,
                fetch_max_wait_ms=50,
            )(serve.on_message)


class _Server:
    """Serves one binding: the whole path of one request message."""

    def __init__(self, unit: Unit, binding: Binding, broker: KafkaBroker) -> None:
        self.unit = unit
        self.contract = binding.contract
        self.handler = binding.handler
        self.broker = broker

    async def on_message(self, msg: KafkaMessage) -> None:
        raw: bytes = msg.body
        headers = {k: v for k, v in msg.headers.items() if isinstance(v, str)}
        try:
            request = self._parse(raw, headers)
        except ContractViolation as bad:
            await self._dead_letter(raw, headers, bad.reason, bad.detail)
            if headers.get(h.CORRELATION_ID):  # tell a waiting caller now, not at its timeout
                await self._reply(headers, None, error=("invalid_request", str(bad)))
            return
        deadline = headers.get(h.DEADLINE)
        if deadline and deadline.isdigit() and int(deadline) < time.time() * 1000:
            await self._reply(headers, None, error=("deadline_exceeded", "deadline passed"))
            return
        await self._serve(raw, headers, request)

    def _parse(self, raw: bytes, headers: dict[str, str]) -> BaseModel:
        if len(raw) > MAX_MESSAGE_BYTES:
            raise ContractViolation("too_large", f"{len(raw)} bytes > {MAX_MESSAGE_BYTES}")
        missing = [name for name in REQUIRED_HEADERS if not headers.get(name)]
        if missing:
            raise ContractViolation("missing_header", f"required headers missing: {missing}")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ContractViolation("not_json", str(exc)) from exc
        try:
            return self.contract.request_model.model_validate(data)
        except ValidationError as exc:
            raise ContractViolation("schema_invalid", _errors(exc)) from exc

    async def _serve(self, raw: bytes, headers: dict[str, str], request: BaseModel) -> None:
        policy = self.unit.retry
        for attempt in range(1, policy.attempts + 1):
            started_cpu, started = time.process_time(), time.perf_counter()
            try:
                reply = await self.handler(request)
            except BusinessError as err:
                await self._reply(headers, None, error=(err.code, err.detail))
                return
            except Exception as exc:  # a technical failure: retry, then dead-letter
                log.warning("%s attempt %d failed: %r", self.contract.capability, attempt, exc)
                if attempt == policy.attempts:
                    await self._dead_letter(raw, headers, "handler_failed", repr(exc))
                    await self._reply(headers, None, error=("unit_failed", repr(exc)))
                    return
                await asyncio.sleep(policy.first_backoff_s * 2 ** (attempt - 1))
                continue
            cpu_s = time.process_time() - started_cpu
            elapsed_ms = (time.perf_counter() - started) * 1000
            await self._reply(headers, reply, cpu_s=cpu_s, handler_ms=elapsed_ms)
            return

    async def _reply(
        self,
        request_headers: dict[str, str],
        reply: BaseModel | None,
        *,
        error: tuple[str, str] | None = None,
        cpu_s: float = 0.0,
        handler_ms: float = 0.0,
    ) -> None:
        pricing = self.contract.pricing
        cost = pricing.cost_per_call + pricing.cost_per_cpu_second * Decimal(f"{cpu_s:.6f}")
        out = {
            h.MESSAGE_ID: uuid.uuid4().hex,
            h.CORRELATION_ID: request_headers.get(h.CORRELATION_ID, ""),
            h.UNIT: self.unit.name,
            h.COST: f"{cost:.6f}",
            h.PRICE: f"{pricing.price_per_call if error is None else Decimal(0):.6f}",
            h.HANDLER_MS: f"{handler_ms:.3f}",
        }
        for passthrough in (h.JOURNEY_ID, h.JOURNEY, h.STEP, h.TRACEPARENT):
            if passthrough in request_headers:
                out[passthrough] = request_headers[passthrough]
        body = b"{}" if reply is None else reply.model_dump_json().encode()
        if error is not None:
            out[h.ERROR], out[h.ERROR_DETAIL] = error[0], error[1][:500]
        await self.broker.publish(
            body, self.contract.reply_topic, key=_key(request_headers), headers=out
        )

    async def _dead_letter(
        self, raw: bytes, headers: dict[str, str], reason: str, detail: str
    ) -> None:
        log.warning("%s -> DLQ (%s): %s", self.contract.capability, reason, detail)
        out = {**headers, h.ERROR: reason, h.ERROR_DETAIL: detail[:1000], h.UNIT: self.unit.name}
        await self.broker.publish(raw, self.contract.dlq_topic, key=_key(headers), headers=out)


def _key(headers: dict[str, str]) -> bytes | None:
    journey = headers.get(h.JOURNEY_ID)
    return journey.encode() if journey else None


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
    )
