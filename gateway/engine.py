"""The journey engine: runs a definition's steps over Kafka, in parallel where the DAG allows."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from decimal import Decimal
from typing import Any

from gateway.definitions import JourneyDefinition, StepDefinition, parse_ref
from gateway.models import Bill, JourneyRun, StepError, StepLine, StepRun, UnitLine
from mbs import headers as h
from mbs.contract import Contract
from mbs.errors import MbsError
from mbs.rpc import Requester


class JourneyInputError(MbsError):
    """The journey input lacks a field a step needs."""


class JourneyEngine:
    """Executes journeys; one instance per gateway process."""

    def __init__(
        self, requester: Requester, catalog: dict[str, Contract], *, default_timeout_s: float
    ) -> None:
        self.requester = requester
        self.catalog = catalog
        self.default_timeout_s = default_timeout_s

    def new_run(self, definition: JourneyDefinition, journey_input: dict[str, Any]) -> JourneyRun:
        """A run in state `running`; input references are checked before anything is sent."""
        missing = sorted(
            {
                ".".join(ref[1])
                for step in definition.steps
                for value in step.input.values()
                if (ref := parse_ref(value))
                and ref[0] == "input"
                and _lookup(journey_input, ref[1]) is _MISSING
            }
        )
        if missing:
            raise JourneyInputError(f"journey input lacks field(s): {', '.join(missing)}")
        return JourneyRun(
            run_id=uuid.uuid4().hex,
            journey=definition.name,
            version=definition.version,
            input=journey_input,
            steps=[StepRun(id=s.id, capability=s.capability) for s in definition.steps],
        )

    async def run(self, definition: JourneyDefinition, run: JourneyRun) -> JourneyRun:
        """Run every step once its `after` steps are done; stop at the first failure."""
        started = time.perf_counter()
        steps = {s.id: s for s in run.steps}
        done: set[str] = set()
        running: dict[asyncio.Task[None], str] = {}
        while run.error is None and len(done) < len(steps):
            for spec in definition.steps:
                ready = spec.id not in done and spec.id not in running.values()
                if ready and set(spec.after) <= done:
                    task = asyncio.create_task(self._step(spec, run, steps[spec.id], started))
                    running[task] = spec.id
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                done.add(running.pop(task))
        for task in running:  # a failure elsewhere: abandon what is still waiting
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for step in run.steps:
            if step.status in ("pending", "running"):
                step.status = "skipped"
        run.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        if run.error is None:
            run.status = "completed"
            run.output = _resolve(definition.output, run)
        run.bill = self._bill(run)
        return run

    async def _step(
        self, spec: StepDefinition, run: JourneyRun, step: StepRun, started: float
    ) -> None:
        contract = self.catalog[spec.capability]
        timeout_s = spec.timeout or self.default_timeout_s
        step.status, step.unit, step.attempts = "running", contract.unit, step.attempts + 1
        step.started_ms = round((time.perf_counter() - started) * 1000, 3)
        payload = json.dumps(_resolve(spec.input, run), default=str).encode()
        try:
            reply = await self.requester.request(
                contract.request_topic,
                payload,
                timeout_s=timeout_s,
                key=run.run_id.encode(),
                extra_headers={
                    h.JOURNEY_ID: run.run_id,
                    h.JOURNEY: f"{run.journey}@{run.version}",
                    h.STEP: spec.id,
                    h.ATTEMPT: str(step.attempts),
                },
            )
        except TimeoutError:
            step.status = "timeout"
            step.error = StepError(
                step=spec.id, code="timeout", detail=f"no reply within {timeout_s:g}s"
            )
            run.status, run.error = "timed_out", step.error
            return
        step.latency_ms = round(reply.latency_ms, 3)
        step.handler_ms, step.cost, step.price = reply.handler_ms, reply.cost, reply.price
        if reply.error is not None:
            step.status = "failed" if reply.error in _TECHNICAL else "business_error"
            step.error = StepError(step=spec.id, code=reply.error, detail=reply.error_detail)
            run.status, run.error = "failed", step.error
            return
        step.status, step.output = "ok", json.loads(reply.body)

    def _bill(self, run: JourneyRun) -> Bill:
        lines: dict[str, UnitLine] = {}
        by_step: list[StepLine] = []
        currency = "EUR"
        for step in run.steps:
            if not step.unit or step.latency_ms is None:
                continue
            by_step.append(
                StepLine(
                    step=step.id,
                    unit=step.unit,
                    price=step.price,
                    cost=step.cost,
                    latency_ms=step.latency_ms,
                )
            )
            contract = self.catalog[step.capability]
            currency = contract.pricing.currency
            line = lines.setdefault(
                step.unit,
                UnitLine(
                    unit=step.unit,
                    owner=contract.owner,
                    calls=0,
                    price=Decimal(0),
                    cost=Decimal(0),
                    latency_ms=0.0,
                ),
            )
            line.calls += 1
            line.price += step.price
            line.cost += step.cost
            line.latency_ms = round(line.latency_ms + step.latency_ms, 3)
        return Bill(
            currency=currency,
            total_price=sum((line.price for line in lines.values()), Decimal(0)),
            total_cost=sum((line.cost for line in lines.values()), Decimal(0)),
            latency_ms=run.latency_ms or 0.0,
            by_step=by_step,
            by_unit=list(lines.values()),
        )


_TECHNICAL = {"unit_failed", "invalid_request", "deadline_exceeded"}
_MISSING = object()


def _lookup(source: Any, path: list[str]) -> Any:
    for part in path:
        if not isinstance(source, dict) or part not in source:
            return _MISSING
        source = source[part]
    return source


def _resolve(mapping: dict[str, Any], run: JourneyRun) -> dict[str, Any]:
    scope = {
        "input": run.input,
        "steps": {s.id: s.output for s in run.steps if s.output is not None},
    }
    out: dict[str, Any] = {}
    for field, value in mapping.items():
        ref = parse_ref(value)
        if ref is None:
            out[field] = value
            continue
        found = _lookup(scope[ref[0]], ref[1])
        out[field] = None if found is _MISSING else found
    return out
