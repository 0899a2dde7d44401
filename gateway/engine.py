"""The journey engine: runs a definition's steps, in parallel where the DAG allows, with
retries, provider failover, shadow copies and saga compensation.

Every side-effecting call (a step's or an undo's) is saved, with the whole run as it stands,
before it is sent, and every outcome before the caller is told; so a run can be taken up again
from any saved state, by this gateway or another, as if nothing had happened. Outcomes of
calls without side effects are not saved on their own: taken up again, the run asks those
again under the same message ids (a unit answers a repeat from its reply log), and nothing
that used them can have happened unsaved. A run ends only once every side effect it caused is
accounted for: used by a completed run, or undone; what cannot be undone after retries is
parked (`compensation_failed`) for an operator, never reported as compensated."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway import calls, inputs
from gateway.caller import SETTLE_WINDOW_S, Caller, Save
from gateway.catalog import Catalog
from gateway.definition import JourneyDefinition, StepDefinition, parse_ref
from gateway.models import Call, JourneyRun, RunStatus, StepError, StepRun
from gateway.observers import JourneyObserver, Observers, ProviderLatency
from gateway.policy import ProviderChooser
from gateway.recovery import ask_what_earlier_lives_did
from gateway.scorecard import Scorecard
from gateway.secrets import SecretUnavailable, Vault, secret_inputs
from gateway.transport import Clock, SystemClock, Transport
from mbs.backoff import Backoff
from mbs.errors import JourneyInputError
from mbs.telemetry import tracing

log = logging.getLogger("mbs.gateway.engine")
_DONE = frozenset({"ok", "skipped", "business_error", "timeout", "failed"})


UNDO_BACKOFF = Backoff(first_s=0.2, max_s=5.0)
PATIENT_BACKOFF = Backoff(first_s=1.0, max_s=30.0)


@dataclass(frozen=True)
class UndoPolicy:
    """How a side effect the run does not keep is pursued before it is parked. A provider
    that answers and says no (or breaks its contract) is asked `attempts` times; one that
    does not answer at all may be down, restarting or cut off, so it is waited for, in
    rounds `patient_backoff` apart, until `patience_s` after the run's outcome."""

    attempts: int = 6
    backoff: Backoff = UNDO_BACKOFF
    patience_s: float = 3600.0
    patient_backoff: Backoff = PATIENT_BACKOFF


class JourneyEngine:
    """Executes journeys; one instance per gateway process."""

    def __init__(
        self,
        transport: Transport,
        catalog: Catalog,
        save: Save,
        *,
        default_timeout_s: float,
        clock: Clock | None = None,
        undo_policy: UndoPolicy | None = None,
        observers: Sequence[JourneyObserver] = (),
        record_limit: int = 1_000_000,
        vault: Vault | None = None,
    ) -> None:
        self.catalog = catalog
        self.vault = vault or Vault.from_settings()  # MBS_SECRETS_KEY
        self.save = save
        self.clock = clock or SystemClock()
        self.chooser = ProviderChooser(catalog)
        self.scorecard = Scorecard(catalog)
        self.observer = Observers([ProviderLatency(self.chooser), self.scorecard, *observers])
        self.caller = Caller(
            transport,
            self.clock,
            self.chooser,
            self.observer,
            timeout_s=default_timeout_s,
            record_limit=record_limit,
        )
        self.default_timeout_s = default_timeout_s
        self.undo_policy = undo_policy or UndoPolicy()

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
        wrong = inputs.problems(definition, self.catalog, journey_input)
        if wrong:
            raise JourneyInputError("journey input refused: " + "; ".join(wrong))
        now = int(self.clock.now_ms())
        run = JourneyRun(
            run_id=uuid.uuid4().hex,
            journey=definition.name,
            version=definition.version,
            input=journey_input,
            created_ms=now,
            deadline_ms=now + int(definition.timeout * 1000),
            steps=[StepRun(id=s.id, capability=s.capability) for s in definition.steps],
        )
        self.vault.seal(run, secret_inputs(definition, self.catalog))  # before its first save
        return run

    async def run(
        self, definition: JourneyDefinition, run: JourneyRun, *, fresh: bool = True
    ) -> JourneyRun:
        """Take the run from wherever its saved state left it to its end (one trace).
        `fresh`: this process made the run and no other life can have acted on it."""
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
                asked = {s.id: len(s.calls) for s in run.steps}
                await self._forward(definition, run)
                if not fresh and run.error is not None:  # see gateway.recovery
                    await ask_what_earlier_lives_did(
                        self.caller, self.vault, self.save, definition, run, asked
                    )
            if not run.decided:
                await self._account(definition, run, patient=False)
                await self._finish(definition, run)
            if run.unsettled:  # the caller has its answer; the books are closed after
                await self._account(definition, run, patient=True)
                await self._close(run)
            span.set_attribute("mbs.journey.status", run.status)
            if run.status != "completed":  # status ERROR: kept whatever the sampling
                tracing.mark_error(span, run.status)
            if run.bill is not None:
                span.set_attribute("mbs.price", float(run.bill.total_price))
                span.set_attribute("mbs.cost", float(run.bill.total_cost))
        return run

    async def _forward(self, definition: JourneyDefinition, run: JourneyRun) -> None:
        steps = {s.id: s for s in run.steps}
        done = {s.id for s in run.steps if s.status in _DONE}
        running: dict[asyncio.Task[None], str] = {}
        try:
            while run.error is None and len(done) < len(steps):
                for spec in definition.steps:
                    waiting = spec.id not in done and spec.id not in running.values()
                    if waiting and set(spec.after) <= done:
                        task = asyncio.create_task(self._step(spec, run, steps[spec.id]))
                        running[task] = spec.id
                if not running:
                    break
                finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(finished, key=running.__getitem__):  # same order every time
                    done.add(running.pop(task))
                    task.result()
        finally:
            # A failure elsewhere, or this run cancelled (its partition went to another
            # gateway): its steps stop here, so no orphan goes on sending and saving beside
            # the instance that resumes the run. What they sent is settled by whoever goes on.
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        if run.error is not None:
            run.status = "compensating"  # saved with the first undo, or with the outcome

    async def _step(self, spec: StepDefinition, run: JourneyRun, step: StepRun) -> None:
        condition = spec.condition
        if condition is not None and not calls.holds(condition, run):
            step.status = "skipped"
            return
        if step.status == "pending":
            step.status = "running"
            step.started_ms = round(self.clock.now_ms() - run.created_ms, 3)
        try:
            payload = calls.resolve(spec.input, run, vault=self.vault)
        except SecretUnavailable as exc:  # no request can be built: the step fails, clearly
            log.error("run %s, step %s: %s", run.run_id, spec.id, exc)
            step.status = "failed"
            outcome: StepError | None = StepError(
                step=spec.id, code="secret_unavailable", detail=str(exc)
            )
        else:
            outcome = await self.caller.serve(spec, run, step, payload, self.save)
        step.finished_seq = sum(1 for s in run.steps if s.finished_seq is not None)
        if outcome is not None:
            step.error = outcome
            run.error = outcome

    async def _account(
        self, definition: JourneyDefinition, run: JourneyRun, *, patient: bool
    ) -> None:
        """Settle every call whose outcome is unknown, then undo every side effect the run
        does not keep (all of them when it failed), newest first (saga). Before the outcome
        (not `patient`): one settle each, and each undo until its provider says no
        `attempts` times or stays silent; what is still open is left `unsettled` and the
        caller is told. Then (`patient`): in rounds until nothing is open, the same again; a
        provider that keeps saying no, or stays silent past the patience, gets its side
        effect `parked`."""
        given_up = run.created_ms + (run.latency_ms or 0.0) + self.undo_policy.patience_s * 1000
        parked = list(run.parked)
        rounds = 0
        while True:
            rounds += 1
            still_open, refused = await self._round(definition, run, parked, patient=patient)
            parked += refused
            if not patient or not still_open:
                break
            left_ms = given_up - self.clock.now_ms()
            if left_ms <= 0:
                log.error(
                    "run %s: no answer about %s within %gs of its outcome; parked",
                    run.run_id,
                    ", ".join(still_open),
                    self.undo_policy.patience_s,
                )
                parked += still_open
                still_open = []
                break
            pause = self.undo_policy.patient_backoff.delay(rounds)
            await self.clock.sleep(min(pause, left_ms / 1000))
        run.parked = parked
        run.unsettled = still_open

    async def _round(
        self,
        definition: JourneyDefinition,
        run: JourneyRun,
        parked: list[str],
        *,
        patient: bool,
    ) -> tuple[list[str], list[str]]:
        """One settle of each call of unknown outcome, then the undo of each side effect
        the run does not keep, newest first. The message ids still open after it, and
        those whose provider said no every time it was asked (to park)."""
        still_open: list[str] = []
        refused: list[str] = []
        for step in run.steps:
            for call in step.calls:
                if call.effect != "unknown":
                    continue
                if call.message_id in parked:
                    continue
                verdict = await self._settle(definition, run, step, call, patient=patient)
                if verdict == "refused" and patient:  # asked `attempts` times: no use
                    refused.append(call.message_id)
                elif verdict != "settled":  # silent, or refused once before the outcome
                    still_open.append(call.message_id)
        keep = run.error is None
        todo = [
            (step, call)
            for step in run.steps
            for call in step.calls
            if call.effect == "done" and not (keep and call.used)
        ]
        for step, call in sorted(todo, key=lambda sc: sc[1].done_seq or 0, reverse=True):
            if call.message_id in parked:
                continue
            verdict = await self._undo(definition, run, step, call)
            if verdict == "refused":  # its provider said no every time in a row
                refused.append(call.message_id)
            elif verdict == "silent":
                still_open.append(call.message_id)
        return still_open, refused

    async def _settle(
        self,
        definition: JourneyDefinition,
        run: JourneyRun,
        step: StepRun,
        call: Call,
        *,
        patient: bool,
    ) -> str:
        """Re-ask a call of unknown outcome (once; when `patient`, up to `attempts` times
        while its answers settle nothing): `settled`, `silent` (no answer), or `refused`
        (answers that settle nothing: they break the contract)."""
        try:
            payload = calls.resolve(definition.step(step.id).input, run, vault=self.vault)
        except SecretUnavailable as exc:  # never assumed: parked once the asking is over
            log.error("run %s: call %s not settled: %s", run.run_id, call.message_id, exc)
            return "refused"
        wait = self.default_timeout_s if patient else min(self.default_timeout_s, SETTLE_WINDOW_S)
        tries = self.undo_policy.attempts if patient else 1
        for attempt in range(1, tries + 1):
            verdict = await self.caller.settle(run, step.id, call, payload, wait)
            if verdict != "refused" or attempt == tries:
                break
            await self.clock.sleep(self.undo_policy.backoff.delay(attempt))
        return verdict

    async def _undo(
        self, definition: JourneyDefinition, run: JourneyRun, step: StepRun, call: Call
    ) -> str:
        """Undo a done call: `undone` (or the definition says it stays), `silent` once an
        attempt gets no answer, or `refused` once its provider has said no `attempts`
        times in a row."""
        spec = definition.step(step.id)
        contract = self.catalog.get(call.capability, call.unit)
        if spec.compensate is None or contract is None:
            return "undone"  # the definition says this effect stays (a sent e-mail, say)
        capability = spec.compensate.capability or contract.compensation or ""
        undo = self.catalog.get(capability, call.unit) or self.catalog.home(capability)
        try:
            payload = calls.resolve(spec.compensate.input, run, own=call.output, vault=self.vault)
        except SecretUnavailable as exc:  # parked, never reported as undone
            log.error("run %s: call %s not undone: %s", run.run_id, call.message_id, exc)
            return "refused"
        verdict = "refused"
        for attempt in range(1, self.undo_policy.attempts + 1):
            if await self.caller.undo(undo, run, step.id, call, payload, self.save):
                break
            if call.undos[-1].outcome == "timeout":
                verdict = "silent"  # asked again in the next round, not counted as a no
                break
            await self.clock.sleep(self.undo_policy.backoff.delay(attempt))
        if call.used:
            step.compensation = call.undos[-1] if call.undos else None
        return "undone" if call.effect == "undone" else verdict

    async def _finish(self, definition: JourneyDefinition, run: JourneyRun) -> None:
        """The outcome: what the caller is told, counted once."""
        for step in run.steps:
            if step.status in ("pending", "running"):
                step.status = "cancelled" if step.calls else "skipped"
        run.latency_ms = round(self.clock.now_ms() - run.created_ms, 3)
        if run.error is None:
            run.output = calls.resolve(definition.output, run)
        run.status = _outcome(run)
        self._books(run)
        await self.save(run)
        self.observer.journey_finished(run)

    async def _close(self, run: JourneyRun) -> None:
        """The books of a decided run, once its unsettled calls are settled or given up."""
        self._books(run)
        await self.save(run)

    def _books(self, run: JourneyRun) -> None:
        if run.parked and run.status != "compensation_failed":
            run.status = "compensation_failed"
            self.observer.run_parked(run)
        elif not run.parked:
            run.status = _outcome(run)
        run.compensated = run.error is not None and not (run.parked or run.unsettled)
        run.bill = calls.bill(run, self.catalog)
        if run.finished and not run.parked:  # nothing more will be sent: no secret is kept
            run.forget_secrets()

    @staticmethod
    def reopen(run: JourneyRun) -> None:
        """An operator asks for a parked run's side effects to be pursued again."""
        run.unsettled, run.parked = run.parked, []

    async def stop(self) -> None:
        await self.caller.drain()


def _outcome(run: JourneyRun) -> RunStatus:
    if run.error is None:
        return "completed"
    return "timed_out" if run.error.code == "timeout" else "failed"
