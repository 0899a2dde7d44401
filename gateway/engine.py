"""The journey engine: runs a definition's steps over Kafka, in parallel where the DAG allows,
with retries, provider failover, shadow copies and saga compensation. Every state change is
saved to the journey log before the engine acts on it; message ids are derived from the run,
step and unit, so a resumed run is answered from the units' memory and charges nothing twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from gateway import calls
from gateway.catalog import Catalog
from gateway.definitions import JourneyDefinition, StepDefinition, parse_ref
from gateway.models import JourneyRun, StepRun
from gateway.policy import ProviderChooser
from gateway.scorecard import Scorecard
from mbs import metrics, tracing
from mbs.errors import MbsError
from mbs.rpc import Requester

Save = Callable[[JourneyRun], Awaitable[object]]
_DONE = frozenset({"ok", "skipped", "business_error", "timeout", "failed"})


class JourneyInputError(MbsError):
    """The journey input lacks a field a step needs."""


class JourneyEngine:
    """Executes journeys; one instance per gateway process."""

    def __init__(
        self, requester: Requester, catalog: Catalog, save: Save, *, default_timeout_s: float
    ) -> None:
        self.catalog = catalog
        self.save = save
        self.chooser = ProviderChooser(catalog)
        self.scorecard = Scorecard(catalog)
        self.caller = calls.Caller(requester, self.chooser, default_timeout_s, self.scorecard)
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
                and calls.lookup(journey_input, ref[1]) is calls.MISSING
            }
        )
        if missing:
            raise JourneyInputError(f"journey input lacks field(s): {', '.join(missing)}")
        now = int(time.time() * 1000)
        return JourneyRun(
            run_id=uuid.uuid4().hex,
            journey=definition.name,
            version=definition.version,
            input=journey_input,
            created_ms=now,
            deadline_ms=now + int(definition.timeout * 1000),
            steps=[StepRun(id=s.id, capability=s.capability) for s in definition.steps],
        )

    async def run(self, definition: JourneyDefinition, run: JourneyRun) -> JourneyRun:
        """Take the run from wherever its saved state left it to its end (one trace)."""
        resumed = bool(run.trace)
        name = f"journey {run.journey}" + (" (resumed)" if resumed else "")
        attributes: dict[str, str | int] = {
            "mbs.journey": run.journey,
            "mbs.journey.version": run.version,
            "mbs.journey.id": run.run_id,
        }
        parent = tracing.context_from(run.trace) if resumed else None
        with tracing.tracer().start_as_current_span(
            name, context=parent, attributes=attributes
        ) as span:
            if not resumed:
                run.trace = tracing.inject_headers({})
            if run.status == "running":
                await self._forward(definition, run)
            if run.status == "compensating":
                await self._compensate(definition, run)
            await self._finish(definition, run)
            span.set_attribute("mbs.journey.status", run.status)
            if run.bill is not None:
                span.set_attribute("mbs.price", float(run.bill.total_price))
                span.set_attribute("mbs.cost", float(run.bill.total_cost))
        return run

    async def _forward(self, definition: JourneyDefinition, run: JourneyRun) -> None:
        steps = {s.id: s for s in run.steps}
        done = {s.id for s in run.steps if s.status in _DONE}
        running: dict[asyncio.Task[None], str] = {}
        while run.error is None and len(done) < len(steps):
            for spec in definition.steps:
                waiting = spec.id not in done and spec.id not in running.values()
                if waiting and set(spec.after) <= done:
                    task = asyncio.create_task(self._step(spec, run, steps[spec.id]))
                    running[task] = spec.id
            if not running:
                break
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                done.add(running.pop(task))
                task.result()
            if run.error is None and len(done) < len(steps):
                await self.save(run)  # outcomes are durable before dependants start
        for task in running:  # a failure elsewhere: abandon what is still waiting
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        if run.error is not None:
            run.status = "compensating"
            await self.save(run)

    async def _step(self, spec: StepDefinition, run: JourneyRun, step: StepRun) -> None:
        condition = spec.condition
        if condition is not None and not calls.holds(condition, run):
            step.status = "skipped"
            return
        step.status = "running"
        step.started_ms = round(time.time() * 1000 - run.created_ms, 3)
        payload = calls.resolve(spec.input, run)
        outcome = await self.caller.serve(
            spec, run, step, payload, self.chooser.order(spec, run.run_id)
        )
        step.finished_seq = sum(1 for s in run.steps if s.finished_seq is not None)
        if outcome is not None:
            step.error = outcome
            run.error = outcome

    async def _compensate(self, definition: JourneyDefinition, run: JourneyRun) -> None:
        """Undo the finished side-effecting steps, newest first (saga)."""
        done = [s for s in run.steps if s.status == "ok" and s.finished_seq is not None]
        for step in sorted(done, key=lambda s: s.finished_seq or 0, reverse=True):
            spec = definition.step(step.id)
            contract = self.catalog.get(step.capability, step.unit)
            if spec.compensate is None or contract is None or not contract.side_effects:
                continue
            if step.compensation is not None and step.compensation.outcome == "ok":
                continue
            capability = spec.compensate.capability or contract.compensation or ""
            undo = self.catalog.get(capability, step.unit) or self.catalog.home(capability)
            payload = calls.resolve(spec.compensate.input, run, own=step.output)
            step.compensation = await self.caller.compensate(undo, run, step, payload)
            await self.save(run)
        run.compensated = True
        run.status = "timed_out" if run.error and run.error.code == "timeout" else "failed"

    async def _finish(self, definition: JourneyDefinition, run: JourneyRun) -> None:
        for step in run.steps:
            if step.status in ("pending", "running"):
                step.status = "skipped"
        run.latency_ms = round(time.time() * 1000 - run.created_ms, 3)
        if run.status == "running":
            run.status = "completed"
            run.output = calls.resolve(definition.output, run)
        run.bill = calls.bill(run, self.catalog)
        await self.save(run)
        labels = {"journey": run.journey, "version": str(run.version)}
        metrics.JOURNEYS.labels(**labels, outcome=run.status).inc()
        metrics.JOURNEY_SECONDS.labels(**labels).observe(run.latency_ms / 1000)
        for line in run.bill.by_unit:
            metrics.JOURNEY_COST.labels(
                journey=run.journey, unit=line.unit, currency=run.bill.currency
            ).inc(float(line.price))

    async def stop(self) -> None:
        await self.caller.drain()
