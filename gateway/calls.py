"""Calls from a journey to units: attempts, failover, shadow copies, compensations; and the
small pure helpers the engine needs (input mapping, conditions, the bill)."""

from __future__ import annotations

import asyncio
import json
import operator
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from opentelemetry.trace import SpanKind

from gateway.catalog import Catalog
from gateway.definitions import Condition, StepDefinition, parse_ref
from gateway.models import (
    Bill,
    Call,
    JourneyRun,
    ShadowResult,
    StepError,
    StepLine,
    StepRun,
    UnitLine,
)
from gateway.policy import ProviderChooser
from gateway.scorecard import Scorecard
from mbs import headers as h
from mbs import metrics, tracing
from mbs.contract import Contract
from mbs.rpc import Reply, Requester

TECHNICAL = frozenset({"unit_failed", "deadline_exceeded"})
COMPENSATION_ATTEMPTS = 3
MISSING = object()


class Caller:
    """Sends a step's requests and interprets the replies."""

    def __init__(
        self, requester: Requester, chooser: ProviderChooser, timeout_s: float, scorecard: Scorecard
    ) -> None:
        self.requester = requester
        self.chooser = chooser
        self.timeout_s = timeout_s
        self.scorecard = scorecard
        self._shadows: set[asyncio.Task[None]] = set()

    async def serve(
        self,
        spec: StepDefinition,
        run: JourneyRun,
        step: StepRun,
        payload: dict[str, Any],
        candidates: list[Contract],
    ) -> StepError | None:
        """Try providers in order, each up to `retry.attempts` times for timeouts and technical
        failures; a business error moves on to the next provider (when failover is on)."""
        last = StepError(
            step=spec.id,
            code="no_provider",
            detail=f"no live provider of {spec.capability} (a partner needs certification: "
            "`mbs contracts verify`)",
        )
        for contract in candidates:
            for attempt in range(1, spec.retry.attempts + 1):
                call, reply = await self._attempt(contract, spec, run, step, payload)
                if call.outcome == "ok" and reply is not None:
                    self._served(spec, run, step, payload, reply)
                    return None
                last = StepError(
                    step=spec.id,
                    code=call.error or call.outcome,
                    detail=reply.error_detail
                    if reply
                    else f"no reply from {call.unit} within {call.timeout_s:g}s",
                )
                if call.outcome == "business_error":
                    break  # an answer, not a glitch: the next provider may still serve it
                if attempt < spec.retry.attempts:
                    await asyncio.sleep(spec.retry.backoff_ms / 1000 * 2 ** (attempt - 1))
            if not spec.providers.failover:
                break
        step.status = "timeout" if last.code == "timeout" else "failed"
        if step.calls and step.calls[-1].outcome == "business_error":
            step.status = "business_error"
        return last

    async def _attempt(
        self,
        contract: Contract,
        spec: StepDefinition,
        run: JourneyRun,
        step: StepRun,
        payload: dict[str, Any],
    ) -> tuple[Call, Reply | None]:
        remaining = run.deadline_ms / 1000 - time.time()
        timeout = min(spec.timeout or self.timeout_s, remaining)
        step.unit, step.attempts = contract.unit, step.attempts + 1
        call = Call(
            unit=contract.unit,
            capability=contract.capability,
            message_id=f"{run.run_id}:{spec.id}:{contract.unit}",
        )
        step.calls.append(call)
        reply = await self._send(contract, call, run, spec.id, payload, timeout)
        if reply is None:
            call.outcome = "timeout"
            self.scorecard.record(call)
            return call, None
        metrics.STEP_SECONDS.labels(
            journey=run.journey,
            step=spec.id,
            unit=contract.capability.split(".")[0],
            provider=contract.unit,
        ).observe(reply.latency_ms / 1000)
        self.chooser.observe(contract.capability, contract.unit, reply.latency_ms)
        call.outcome = _outcome(contract, reply)
        self.scorecard.record(call)
        return call, reply

    async def _send(
        self,
        contract: Contract,
        call: Call,
        run: JourneyRun,
        step_id: str,
        payload: dict[str, Any],
        timeout: float,
        shadow: bool = False,
    ) -> Reply | None:
        call.timeout_s = round(max(timeout, 0.0), 3)
        call.started_ms = round(time.time() * 1000 - run.created_ms, 3)
        with tracing.tracer().start_as_current_span(
            f"step {step_id}" + (" (shadow)" if shadow else ""),
            kind=SpanKind.CLIENT,
            attributes={
                "mbs.unit": contract.unit,
                "mbs.owner": contract.owner,
                "mbs.capability": contract.capability,
                "mbs.provider": contract.unit,
                "mbs.step": step_id,
                "mbs.shadow": shadow,
            },
        ) as span:
            reply = await self._exchange(contract, call, run, step_id, payload, timeout, shadow)
            span.set_attribute("mbs.outcome", call.error or "ok")
            span.set_attribute("mbs.cost", float(call.cost))
            span.set_attribute("mbs.price", float(call.price))
        return reply

    async def _exchange(
        self,
        contract: Contract,
        call: Call,
        run: JourneyRun,
        step_id: str,
        payload: dict[str, Any],
        timeout: float,
        shadow: bool,
    ) -> Reply | None:
        if timeout <= 0:
            call.error = "timeout"
            return None
        extra = tracing.inject_headers(
            {
                h.JOURNEY_ID: run.run_id,
                h.JOURNEY: f"{run.journey}@{run.version}",
                h.STEP: step_id,
                h.MESSAGE_ID: call.message_id,
            }
        )
        if shadow:
            extra[h.SHADOW] = "1"
        try:
            reply = await self.requester.request(
                contract.request_topic,
                json.dumps(payload, default=str).encode(),
                timeout_s=timeout,
                key=run.run_id.encode(),
                extra_headers=extra,
                reply_from=contract.reply_topic,
            )
        except TimeoutError:
            call.error = "timeout"
            return None
        call.latency_ms = round(reply.latency_ms, 3)
        call.cost, call.price, call.error = reply.cost, reply.price, reply.error
        return reply

    def _served(
        self,
        spec: StepDefinition,
        run: JourneyRun,
        step: StepRun,
        payload: dict[str, Any],
        reply: Reply,
    ) -> None:
        step.status, step.output = "ok", json.loads(reply.body)
        step.latency_ms, step.handler_ms = round(reply.latency_ms, 3), reply.handler_ms
        step.cost = sum((c.cost for c in step.calls), Decimal(0))
        step.price = sum((c.price for c in step.calls), Decimal(0))
        shadow = spec.providers.shadow
        contract = self.chooser.catalog.get(spec.capability, shadow) if shadow else None
        if contract is not None and step.output is not None:
            task = asyncio.create_task(self._shadow(contract, run, step, payload, step.output))
            self._shadows.add(task)
            task.add_done_callback(self._shadows.discard)

    async def _shadow(
        self,
        contract: Contract,
        run: JourneyRun,
        step: StepRun,
        payload: dict[str, Any],
        primary: dict[str, Any],
    ) -> None:
        """A dry-run copy to the candidate; compared, scored, never used."""
        call = Call(
            unit=contract.unit,
            capability=contract.capability,
            message_id=f"{run.run_id}:{step.id}:{contract.unit}:shadow",
        )
        reply = await self._send(contract, call, run, step.id, payload, self.timeout_s, True)
        differences = (
            ["<no reply>"]
            if reply is None
            else (
                [f"error: {reply.error}"]
                if reply.error
                else _compare(primary, json.loads(reply.body))
            )
        )
        agreement = "disagree" if reply is None or reply.error else "agree"
        step.shadow = ShadowResult(
            unit=contract.unit,
            agreement=agreement,
            differences=differences,
            latency_ms=call.latency_ms,
        )
        metrics.SHADOW_COMPARISONS.labels(
            capability=contract.capability, provider=contract.unit, agreement=agreement
        ).inc()
        self.scorecard.record_shadow(contract.unit, contract.capability, agreement)

    async def compensate(
        self, contract: Contract, run: JourneyRun, step: StepRun, payload: dict[str, Any]
    ) -> Call:
        """Undo one step on the unit that did it; retried, never abandoned silently."""
        call = Call(
            unit=contract.unit,
            capability=contract.capability,
            message_id=f"{run.run_id}:{step.id}:{contract.unit}:compensate",
        )
        for attempt in range(1, COMPENSATION_ATTEMPTS + 1):
            reply = await self._send(
                contract, call, run, f"{step.id}.compensate", payload, self.timeout_s
            )
            call.outcome = "timeout" if reply is None else _outcome(contract, reply)
            self.scorecard.record(call)
            if call.outcome in ("ok", "business_error"):
                break
            await asyncio.sleep(0.1 * 2 ** (attempt - 1))
        return call

    async def drain(self) -> None:
        await asyncio.gather(*self._shadows, return_exceptions=True)


def _outcome(contract: Contract, reply: Reply) -> str:
    if reply.error is None:
        return "ok"
    if reply.error in TECHNICAL:
        return "failed"
    declared = {e.code: e for e in contract.errors}.get(reply.error)
    return "retryable" if declared is not None and declared.retryable else "business_error"


def _compare(primary: dict[str, Any], shadow: dict[str, Any]) -> list[str]:
    """Fields whose presence differs; values of ids and carriers naturally differ, so only
    the shape and the business fields both sides share are compared."""
    missing = sorted(set(primary) ^ set(shadow))
    return [f"field {name!r} only on one side" for name in missing]


def lookup(source: Any, path: list[str]) -> Any:
    for part in path:
        if not isinstance(source, dict) or part not in source:
            return MISSING
        source = source[part]
    return source


def resolve(
    mapping: dict[str, Any], run: JourneyRun, own: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Fill a step's input from the journey input, earlier outputs and (compensation) $self."""
    scope = {
        "input": run.input,
        "self": own or {},
        "steps": {s.id: s.output for s in run.steps if s.output is not None},
    }
    out: dict[str, Any] = {}
    for field, value in mapping.items():
        ref = parse_ref(value)
        found = value if ref is None else lookup(scope[ref[0]], ref[1])
        out[field] = None if found is MISSING else found
    return out


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "in": lambda a, b: a in b,
    "not in": lambda a, b: a not in b,
}


def holds(condition: Condition, run: JourneyRun) -> bool:
    """Evaluate a step's `when`; a missing value makes the condition false."""
    ref = parse_ref(condition.ref)
    assert ref is not None
    scope = {"input": run.input, "steps": {s.id: s.output for s in run.steps if s.output}}
    value = lookup(scope[ref[0]], ref[1])
    if value is MISSING:
        return False
    try:
        return bool(_OPS[condition.op](value, condition.value))
    except TypeError:
        return False


def bill(run: JourneyRun, catalog: Catalog) -> Bill:
    """Every call's price and cost (attempts and compensations too), by step and by unit."""
    by_step: list[StepLine] = []
    by_unit: dict[str, UnitLine] = {}
    currency = "EUR"
    for step in run.steps:
        for call in [*step.calls, *([step.compensation] if step.compensation else [])]:
            label = step.id if call is not step.compensation else f"{step.id}.compensate"
            contract = catalog.get(call.capability, call.unit)
            owner = contract.owner if contract else call.unit
            currency = contract.pricing.currency if contract else currency
            by_step.append(
                StepLine(
                    step=label,
                    unit=call.unit,
                    price=call.price,
                    cost=call.cost,
                    latency_ms=call.latency_ms or 0.0,
                )
            )
            line = by_unit.setdefault(
                call.unit,
                UnitLine(
                    unit=call.unit,
                    owner=owner,
                    calls=0,
                    price=Decimal(0),
                    cost=Decimal(0),
                    latency_ms=0.0,
                ),
            )
            line.calls += 1
            line.price += call.price
            line.cost += call.cost
            line.latency_ms = round(line.latency_ms + (call.latency_ms or 0.0), 3)
    return Bill(
        currency=currency,
        total_price=sum((s.price for s in by_step), Decimal(0)),
        total_cost=sum((s.cost for s in by_step), Decimal(0)),
        latency_ms=run.latency_ms or 0.0,
        by_step=by_step,
        by_unit=list(by_unit.values()),
    )
