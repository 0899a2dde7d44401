"""Calls from a journey to units: attempts, failover, settling calls whose outcome is unknown,
undoing side effects, shadow copies.

The rule that keeps money moving once: a side-effecting call is saved before it is sent, and
a unit's answer to a message id is final (done, a business error, or `deadline_exceeded` for a
request it never started). A call left without an answer (timeout, crash, cancellation) is
*settled* by sending the same message id with the same deadline again: the unit answers from
its memory, or refuses the request as past its deadline. Nothing is assumed undone or done."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from opentelemetry.trace import SpanKind

from gateway import replies
from gateway.calls import outcome_of
from gateway.definition import StepDefinition
from gateway.models import NOT_SENT, Call, JourneyRun, ShadowResult, StepError, StepRun
from gateway.observers import JourneyObserver
from gateway.policy import ProviderChooser
from gateway.transport import Clock, Outgoing, Transport
from mbs import wire as h
from mbs.backoff import Backoff
from mbs.contract import Contract
from mbs.kafka.rpc import Reply
from mbs.telemetry import tracing

log = logging.getLogger("mbs.gateway.caller")
Save = Callable[[JourneyRun], Awaitable[object]]
# How long the engine waits for a settle when it only wants to know quickly (a failed run's
# cancelled calls); within a step, a timed-out call gets as long again as the step waits.
SETTLE_WINDOW_S = 1.0


class Caller:
    """Sends a step's requests and interprets the replies."""

    def __init__(
        self,
        transport: Transport,
        clock: Clock,
        chooser: ProviderChooser,
        observer: JourneyObserver,
        *,
        timeout_s: float,
        record_limit: int = 1_000_000,
    ) -> None:
        self.transport = transport
        self.clock = clock
        self.chooser = chooser
        self.catalog = chooser.catalog
        self.observer = observer
        self.timeout_s = timeout_s
        self.record_limit = record_limit  # MBS_MAX_RECORD_BYTES: what a run's record may take
        self._shadows: set[asyncio.Task[None]] = set()

    async def serve(
        self,
        spec: StepDefinition,
        run: JourneyRun,
        step: StepRun,
        payload: dict[str, Any],
        save: Save,
    ) -> StepError | None:
        """Serve a step: settle what an earlier life of the run left open, then try providers
        in their saved order, each up to `retry.attempts` times; a business error moves on to
        the next provider (when failover is on)."""
        if not step.providers:
            step.providers = [c.unit for c in self.chooser.order(spec, run.run_id)]
        for call in step.calls:
            if call.outcome == "pending":  # sent by an earlier life of the run, unanswered
                await self._resumed(spec, run, call, payload)
            if call.effect == "done" or (call.outcome == "ok" and call.effect == "none"):
                self._served(spec, run, step, payload, call)
                return None
        last = StepError(
            step=spec.id,
            code="no_provider",
            detail=f"no live provider of {spec.capability} (a partner needs certification: "
            "`mbs contracts verify`)",
        )
        answered = [c for c in step.calls if c.outcome not in ("pending", "interrupted")]
        if answered:  # an earlier life of the run already heard why (a resumed run)
            last = StepError(
                step=spec.id,
                code=answered[-1].error or answered[-1].outcome,
                detail=answered[-1].detail,
            )
        while (contract := self._next(spec, step)) is not None:
            await self._backoff(spec, step, contract.unit)
            call = await self._attempt(contract, spec, run, step, payload, save)
            if call.outcome == "ok":
                self._served(spec, run, step, payload, call)
                return None
            last = StepError(step=spec.id, code=call.error or call.outcome, detail=call.detail)
        step.status = "timeout" if last.code == "timeout" else "failed"
        if step.calls and step.calls[-1].outcome == "business_error":
            step.status = "business_error"
        return last

    async def _resumed(
        self, spec: StepDefinition, run: JourneyRun, call: Call, payload: dict[str, Any]
    ) -> None:
        """A call a crash interrupted is settled: asked again under its message id and
        deadline. Answered, it counts as any answer; unanswered or never started (past its
        deadline), it does not count as an attempt and the step goes on afresh."""
        await self.settle(run, spec.id, call, payload, self._window(spec, run))
        if call.outcome in ("pending", "timeout") or call.error == "deadline_exceeded":
            call.outcome = "interrupted"

    def _next(self, spec: StepDefinition, step: StepRun) -> Contract | None:
        """The next provider to try, from the saved order and the calls made so far."""
        return next((c for c, tried in self._open(spec, step) if tried < spec.retry.attempts), None)

    def _chances_left(self, spec: StepDefinition, step: StepRun) -> int:
        """Attempts the step may still make, over every provider `_next` may still pick."""
        return sum(max(0, spec.retry.attempts - tried) for _, tried in self._open(spec, step))

    def _open(self, spec: StepDefinition, step: StepRun) -> list[tuple[Contract, int]]:
        """Each provider that may still serve the step, with its attempts so far; one whose
        last answer was a business error is passed (an answer, not a glitch)."""
        units = step.providers if spec.providers.failover else step.providers[:1]
        found = []
        for unit in units:
            tried = [c for c in step.calls if c.unit == unit and c.outcome != "interrupted"]
            contract = self.catalog.get(spec.capability, unit)
            if contract is not None and not (tried and tried[-1].outcome == "business_error"):
                found.append((contract, len(tried)))
        return found

    async def _backoff(self, spec: StepDefinition, step: StepRun, unit: str) -> None:
        tried = sum(1 for c in step.calls if c.unit == unit)
        if tried:
            await self.clock.sleep(Backoff(spec.retry.backoff_ms / 1000).delay(tried))

    def _window(self, spec: StepDefinition, run: JourneyRun) -> float:
        """A call that timed out gets as long again to show it was done after all: under a
        backlog the re-ask queues behind the original, and moving on too early makes a second
        side effect (undone later, but money moved twice)."""
        remaining = (run.deadline_ms - self.clock.now_ms()) / 1000
        return max(0.0, min(spec.timeout or self.timeout_s, remaining))

    async def _attempt(
        self,
        contract: Contract,
        spec: StepDefinition,
        run: JourneyRun,
        step: StepRun,
        payload: dict[str, Any],
        save: Save,
    ) -> Call:
        now = self.clock.now_ms()
        timeout = min(spec.timeout or self.timeout_s, (run.deadline_ms - now) / 1000)
        # The step's last chance may be served as long as the journey may: a provider that is
        # down (restarting, its broker away) finds it in its topic when it is back.
        last = self._chances_left(spec, step) <= 1
        number = len(step.calls) + 1
        call = Call(
            unit=contract.unit,
            capability=contract.capability,
            message_id=f"{run.run_id}:{spec.id}:{contract.unit}:{number}",
            deadline_ms=run.deadline_ms if last else int(now + max(timeout, 0) * 1000),
        )
        step.unit, step.attempts = contract.unit, step.attempts + 1
        step.calls.append(call)
        if timeout <= 0:
            call.outcome = call.error = "timeout"
            call.detail = NOT_SENT
            return call
        if contract.side_effects:
            call.effect = "unknown"
            await save(run)  # durable before it can happen: a resumed run settles it
        reply = await self._send(contract, call, run, spec.id, payload, timeout)
        self._record(contract, call, reply, run)
        if call.effect == "unknown":
            await self.settle(run, spec.id, call, payload, self._window(spec, run))
        if last and call.outcome == "timeout":  # nothing left to try: wait for this one
            remaining = (run.deadline_ms - self.clock.now_ms()) / 1000
            await self.settle(run, spec.id, call, payload, remaining)
        return call

    async def settle(
        self, run: JourneyRun, step_id: str, call: Call, payload: dict[str, Any], wait_s: float
    ) -> str:
        """Ask the unit again under the same message id and deadline: `settled` (done or
        not is known), `silent` (no answer within `wait_s`) or `refused` (an answer that
        breaks the contract, or the provider is gone). Past its deadline, never started."""
        contract = self.catalog.get(call.capability, call.unit)
        if contract is None or wait_s <= 0:
            return "refused" if contract is None else "silent"
        outgoing = self._outgoing(run, step_id, call, payload)
        try:
            reply = await self.transport.request(contract, outgoing, wait_s)
        except TimeoutError:
            return "silent"
        self._record(contract, call, reply, run)
        return "refused" if call.effect == "unknown" else "settled"

    async def undo(
        self,
        contract: Contract,
        run: JourneyRun,
        step_id: str,
        call: Call,
        payload: dict[str, Any],
        save: Save,
    ) -> bool:
        """One attempt to undo a done call on the unit that did it; True when it is undone.
        Each attempt has its own message id: undoing is idempotent on the unit's side."""
        now = self.clock.now_ms()
        undo = Call(
            unit=contract.unit,
            capability=contract.capability,
            message_id=f"{call.message_id}:undo:{len(call.undos) + 1}",
            deadline_ms=int(now + self.timeout_s * 1000),
        )
        call.undos.append(undo)
        await save(run)
        label = f"{step_id}.compensate"
        reply = await self._send(contract, undo, run, label, payload, self.timeout_s)
        self._record(contract, undo, reply, run, effects=False)
        if undo.outcome == "ok":
            call.effect = "undone"
        return call.effect == "undone"

    def _record(
        self,
        contract: Contract,
        call: Call,
        reply: Reply | None,
        run: JourneyRun,
        *,
        effects: bool = True,
    ) -> None:
        """What a reply (or its absence) says about a call and its side effect."""
        if reply is None:
            call.outcome = call.error = "timeout"
            call.detail = f"no reply from {call.unit} within {call.timeout_s or 0:g}s"
            self.observer.call_answered(run, contract, call, None)
            return
        call.latency_ms = round(reply.latency_ms, 3)
        room = replies.reply_room(self.record_limit, len(run.steps))
        checked = replies.check(contract, reply, room if effects else None)
        if isinstance(checked, str):  # the provider's technical failure; done or not, unknown
            log.warning("reply to %s from %s refused: %s", call.message_id, call.unit, checked)
            call.outcome, call.error, call.detail = "failed", replies.INVALID_REPLY, checked
            call.cost = call.price = Decimal(0)
            self.observer.call_answered(run, contract, call, reply)
            if effects and contract.side_effects and call.effect == "none":
                call.effect = "unknown"
            return
        call.cost, call.price, call.error = checked.cost, checked.price, reply.error
        call.detail = reply.error_detail or checked.note
        call.handler_ms = checked.handler_ms
        if checked.note:
            log.warning("reply to %s: %s; billed the contract's", call.message_id, checked.note)
        call.outcome = outcome_of(contract, reply)
        self.observer.call_answered(run, contract, call, reply)
        if not effects:
            return
        if contract.side_effects and call.effect in ("none", "unknown"):
            call.effect = "done" if call.outcome == "ok" else "none"
        if call.outcome == "ok":
            call.output = checked.body
            if call.effect == "done" and call.done_seq is None:
                call.done_seq = 1 + max(
                    (c.done_seq or 0 for s in run.steps for c in s.calls), default=0
                )

    def _served(
        self,
        spec: StepDefinition,
        run: JourneyRun,
        step: StepRun,
        payload: dict[str, Any],
        call: Call,
    ) -> None:
        call.used = True
        step.status, step.output, step.unit = "ok", call.output, call.unit
        if call.effect == "none":
            call.output = None  # pure: the step keeps the output, the call need not
        step.latency_ms, step.handler_ms = call.latency_ms, call.handler_ms
        step.cost = sum((c.cost for c in step.calls), Decimal(0))
        step.price = sum((c.price for c in step.calls), Decimal(0))
        shadow = spec.providers.shadow
        contract = self.catalog.get(spec.capability, shadow) if shadow else None
        if contract is not None and step.output is not None:
            task = asyncio.create_task(self._shadow(contract, run, step, payload, step.output))
            self._shadows.add(task)
            task.add_done_callback(self._shadows.discard)

    def _outgoing(
        self,
        run: JourneyRun,
        step_id: str,
        call: Call,
        payload: dict[str, Any],
        shadow: bool = False,
    ) -> Outgoing:
        headers = {
            h.JOURNEY_ID: run.run_id,
            h.JOURNEY: f"{run.journey}@{run.version}",
            h.STEP: step_id,
        }
        if shadow:
            headers[h.SHADOW] = "1"
        return Outgoing(
            payload=payload,
            message_id=call.message_id,
            deadline_ms=call.deadline_ms or 0,
            run_id=run.run_id,
            headers=tracing.inject_headers(headers),
        )

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
        call.started_ms = round(self.clock.now_ms() - run.created_ms, 3)
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
            outgoing = self._outgoing(run, step_id, call, payload, shadow)
            try:
                reply: Reply | None = await self.transport.request(contract, outgoing, timeout)
            except TimeoutError:
                reply = None
            span.set_attribute("mbs.outcome", "timeout" if reply is None else reply.error or "ok")
            amounts = replies.money(reply) if reply is not None else None
            if amounts is not None:  # a broken reply is judged by `replies.check`, not here
                span.set_attribute("mbs.cost", float(amounts[0]))
                span.set_attribute("mbs.price", float(amounts[1]))
        return reply

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
            deadline_ms=int(self.clock.now_ms() + self.timeout_s * 1000),
        )
        reply = await self._send(contract, call, run, step.id, payload, self.timeout_s, True)
        if reply is None:
            differences, agreement = ["<no reply>"], "disagree"
        elif reply.error:
            differences, agreement = [f"error: {reply.error}"], "disagree"
        else:
            differences, agreement = _compare(primary, _body(reply)), "agree"
        step.shadow = ShadowResult(
            unit=contract.unit,
            agreement=agreement,
            differences=differences,
            latency_ms=None if reply is None else round(reply.latency_ms, 3),
        )
        self.observer.shadow_compared(contract, agreement)

    async def drain(self) -> None:
        await asyncio.gather(*self._shadows, return_exceptions=True)


def _body(reply: Reply) -> dict[str, Any]:
    data = json.loads(reply.body)
    return data if isinstance(data, dict) else {}


def _compare(primary: dict[str, Any], shadow: dict[str, Any]) -> list[str]:
    """Fields whose presence differs; values of ids and carriers naturally differ, so only
    the shape and the business fields both sides share are compared."""
    missing = sorted(set(primary) ^ set(shadow))
    return [f"field {name!r} only on one side" for name in missing]
