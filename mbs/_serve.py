"""The whole path of one request message through a unit (the kit's side of a handler)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

from faststream.kafka import KafkaBroker, KafkaMessage
from opentelemetry import trace
from pydantic import BaseModel, ValidationError

from mbs import headers as h
from mbs import metrics
from mbs.dedup import ReplyStore, StoredReply
from mbs.errors import BusinessError, ContractViolation
from mbs.unit import _DRY_RUN

if TYPE_CHECKING:
    from mbs.unit import Binding, Unit

log = logging.getLogger("mbs.unit")
MAX_MESSAGE_BYTES = 1_000_000
REQUIRED_HEADERS = (h.MESSAGE_ID, h.CORRELATION_ID)
_PASSTHROUGH = (h.JOURNEY_ID, h.JOURNEY, h.STEP, h.ATTEMPT, h.TRACEPARENT, h.SHADOW)


class Server:
    """Serves one binding of one unit."""

    def __init__(
        self, unit: Unit, binding: Binding, broker: KafkaBroker, store: ReplyStore
    ) -> None:
        self.unit = unit
        self.contract = binding.contract
        self.handler = binding.handler
        self.broker = broker
        self.store = store
        self.labels = {"unit": unit.name, "capability": self.contract.capability}
        self.money = {**self.labels, "currency": self.contract.pricing.currency}

    async def on_message(self, msg: KafkaMessage) -> None:
        raw: bytes = msg.body
        hdrs = {k: v for k, v in msg.headers.items() if isinstance(v, str)}
        try:
            request = self._parse(raw, hdrs)
        except ContractViolation as bad:
            await self._reject(raw, hdrs, bad)
            return
        remembered = self.store.get(hdrs[h.MESSAGE_ID])
        if remembered is not None:  # a redelivery: the same answer, no second side effect
            await self._publish(
                remembered.body,
                {**remembered.headers, h.CORRELATION_ID: hdrs[h.CORRELATION_ID]},
                hdrs,
            )
            return
        deadline = hdrs.get(h.DEADLINE, "")
        if deadline.isdigit() and int(deadline) < time.time() * 1000:
            await self._error(hdrs, "deadline_exceeded", f"deadline {deadline} passed", "failed")
            return
        if hdrs.get(h.SHADOW) == "1":
            await self._shadow(raw, hdrs, request)
            return
        await self._serve(raw, hdrs, request)

    def _parse(self, raw: bytes, hdrs: dict[str, str]) -> BaseModel:
        if len(raw) > MAX_MESSAGE_BYTES:
            raise ContractViolation("too_large", f"{len(raw)} bytes > {MAX_MESSAGE_BYTES}")
        missing = [name for name in REQUIRED_HEADERS if not hdrs.get(name)]
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

    async def _reject(self, raw: bytes, hdrs: dict[str, str], bad: ContractViolation) -> None:
        await self._dead_letter(raw, hdrs, bad.reason, bad.detail)
        self._count("invalid")
        if hdrs.get(h.CORRELATION_ID):  # tell a waiting caller now, not at its timeout
            await self._reply(hdrs, None, error=("invalid_request", str(bad)))

    async def _shadow(self, raw: bytes, hdrs: dict[str, str], request: BaseModel) -> None:
        if not self.contract.supports_dry_run:
            await self._error(
                hdrs,
                "dry_run_unsupported",
                f"{self.contract.capability} declares no dry run",
                "shadow",
            )
            return
        token = _DRY_RUN.set(True)
        try:
            await self._serve(raw, hdrs, request, remember=False, outcome="shadow")
        finally:
            _DRY_RUN.reset(token)

    async def _serve(
        self,
        raw: bytes,
        hdrs: dict[str, str],
        request: BaseModel,
        *,
        remember: bool = True,
        outcome: str = "ok",
    ) -> None:
        policy = self.unit.retry
        for attempt in range(1, policy.attempts + 1):
            started_cpu, started = time.process_time(), time.perf_counter()
            try:
                reply = await self.handler(request)
            except BusinessError as err:
                self._observe(started, started_cpu, "business_error" if remember else outcome)
                await self._reply(hdrs, None, error=(err.code, err.detail), remember=remember)
                return
            except Exception as exc:  # a technical failure: retry, then dead-letter
                log.warning("%s attempt %d failed: %r", self.contract.capability, attempt, exc)
                if attempt < policy.attempts:
                    await asyncio.sleep(policy.first_backoff_s * 2 ** (attempt - 1))
                    continue
                await self._dead_letter(raw, hdrs, "handler_failed", repr(exc))
                await self._error(hdrs, "unit_failed", repr(exc), "failed")
                return
            cpu_s, elapsed = self._observe(started, started_cpu, outcome)
            await self._reply(
                hdrs, reply, cpu_s=cpu_s, handler_ms=elapsed * 1000, remember=remember
            )
            return

    def _observe(self, started: float, started_cpu: float, outcome: str) -> tuple[float, float]:
        elapsed, cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
        metrics.UNIT_HANDLER_SECONDS.labels(**self.labels).observe(elapsed)
        self._count(outcome)
        return cpu_s, elapsed

    def _count(self, outcome: str) -> None:
        metrics.UNIT_REQUESTS.labels(
            **self.labels, version=self.contract.version, outcome=outcome
        ).inc()

    async def _error(self, hdrs: dict[str, str], code: str, detail: str, outcome: str) -> None:
        self._count(outcome)
        await self._reply(hdrs, None, error=(code, detail))

    async def _reply(
        self,
        hdrs: dict[str, str],
        reply: BaseModel | None,
        *,
        error: tuple[str, str] | None = None,
        cpu_s: float = 0.0,
        handler_ms: float = 0.0,
        remember: bool = False,
    ) -> None:
        pricing = self.contract.pricing
        cost = pricing.cost_per_call + pricing.cost_per_cpu_second * Decimal(f"{cpu_s:.6f}")
        shadow = hdrs.get(h.SHADOW) == "1"
        price = pricing.price_per_call if error is None and not shadow else Decimal(0)
        out = {
            h.MESSAGE_ID: uuid.uuid4().hex,
            h.CORRELATION_ID: hdrs.get(h.CORRELATION_ID, ""),
            h.UNIT: self.unit.name,
            h.COST: f"{cost:.6f}",
            h.PRICE: f"{price:.6f}",
            h.HANDLER_MS: f"{handler_ms:.3f}",
        }
        if error is not None:
            out[h.ERROR], out[h.ERROR_DETAIL] = error[0], error[1][:500]
        body = b"{}" if reply is None else reply.model_dump_json().encode()
        if remember:  # the reply log is the memory: the published reply is the durable record
            out[h.REQUEST_ID] = hdrs[h.MESSAGE_ID]
            await self.store.put(hdrs[h.MESSAGE_ID], StoredReply(body, dict(out)))
        trace.get_current_span().set_attributes(
            {
                "mbs.unit": self.unit.name,
                "mbs.owner": self.contract.owner,
                "mbs.capability": self.contract.capability,
                "mbs.provider": self.unit.name,
                "mbs.cost": float(cost),
                "mbs.price": float(price),
                "mbs.outcome": error[0] if error else "ok",
            }
        )
        if not shadow:  # a dry run is the candidate's cost of winning business, not billed
            metrics.UNIT_COST.labels(**self.money).inc(float(cost))
            metrics.UNIT_REVENUE.labels(**self.money).inc(float(price))
        await self._publish(body, out, hdrs)

    async def _publish(self, body: bytes, out: dict[str, str], hdrs: dict[str, str]) -> None:
        for name in _PASSTHROUGH:
            if name in hdrs:
                out[name] = hdrs[name]
        await self.broker.publish(body, self.contract.reply_topic, key=_key(hdrs), headers=out)

    async def _dead_letter(
        self, raw: bytes, hdrs: dict[str, str], reason: str, detail: str
    ) -> None:
        log.warning("%s -> DLQ (%s): %s", self.contract.capability, reason, detail)
        metrics.UNIT_DLQ.labels(**self.labels, reason=reason).inc()
        out = {**hdrs, h.ERROR: reason, h.ERROR_DETAIL: detail[:1000], h.UNIT: self.unit.name}
        await self.broker.publish(raw, self.contract.dlq_topic, key=_key(hdrs), headers=out)


def _key(hdrs: dict[str, str]) -> bytes | None:
    journey = hdrs.get(h.JOURNEY_ID)
    return journey.encode() if journey else None


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
    )
