"""A deterministic world for the journey engine: fake units that behave as the unit kit
promises (an answer per message id is final and remembered; a request past its deadline is
refused, never started; undoing is idempotent), a fault schedule, a virtual clock, and crashes
at any await point of the engine's I/O. The engine under test is the production one."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from gateway.catalog import Catalog
from gateway.definition import JourneyDefinition
from gateway.engine import JourneyEngine, UndoPolicy
from gateway.models import JourneyRun
from gateway.transport import Outgoing
from mbs import Contract, DeclaredError, Pricing, Sla
from mbs import wire as h
from mbs.backoff import Backoff
from mbs.kafka import Reply

# What may happen to one request: served; a declared business error; a retryable one; a
# technical failure (not remembered); the unit too slow (queued, served after its deadline);
# the reply lost (done, never heard of); the gateway dies right after the unit did it; a buggy
# provider that does the work and answers garbage (not JSON) or bills more than its contract.
FAULTS = (
    "ok",
    "business",
    "retryable",
    "failed",
    "late",
    "lost_reply",
    "crash_after",
    "garbage",
    "overprice",
)
TIMEOUT_S = 1.0
RESTART_S = 2.0  # a gateway restarts in longer than a step waits
PATIENCE_S = 120.0  # a silent provider is waited for this long after the outcome


class Crash(BaseException):
    """The gateway process dies here: no clean-up runs, nothing more is sent or saved."""


@functools.cache
def contract(unit: str, capability: str, *, side_effects: bool, price: str) -> Contract:
    domain = capability.split(".", 1)[0]
    return Contract(
        unit=unit,
        owner=f"team-{unit}",
        kind="internal" if unit == domain else "partner",
        capability=capability,
        version="1.0.0",
        request={"type": "object"},
        reply={"type": "object"},
        errors=[
            DeclaredError(code="declined"),
            DeclaredError(code="busy", retryable=True),
        ],
        side_effects=side_effects,
        compensation=f"{domain}.undo" if side_effects and capability.endswith(".act") else None,
        sla=Sla(p99_ms=100, availability=0.99),
        pricing=Pricing(price_per_call=Decimal(price), cost_per_call=Decimal("0.001")),
    )


@dataclass
class Effect:
    """A side effect a unit did: a charge, a reservation."""

    effect_id: str
    unit: str
    message_id: str
    undone: int = 0

    @property
    def step(self) -> str:
        return self.message_id.split(":")[1]


@dataclass
class Answer:
    body: dict[str, Any]
    error: str | None
    price: Decimal
    raw: bytes | None = None  # what a buggy provider sends instead of the body
    stated_price: Decimal | None = None  # what a greedy provider writes in mbs-price


@dataclass
class FakeUnit:
    """Serves requests in order (one partition), remembering its final answers."""

    name: str
    world: World
    memory: dict[str, Answer] = field(default_factory=dict)
    queue: deque[tuple[Contract, Outgoing]] = field(default_factory=deque)

    def drain(self) -> None:
        while self.queue:
            contract, outgoing = self.queue.popleft()
            self.serve(contract, outgoing, "ok")

    def serve(self, contract: Contract, outgoing: Outgoing, fault: str) -> Answer:
        mid = outgoing.message_id
        if mid in self.memory:
            return self.memory[mid]
        if self.world.now_ms > outgoing.deadline_ms:
            return self._final(mid, Answer({}, "deadline_exceeded", Decimal(0)))
        if fault == "failed":
            return Answer({}, "unit_failed", Decimal(0))
        if fault in ("business", "retryable"):
            code = "declined" if fault == "business" else "busy"
            return self._final(mid, Answer({}, code, Decimal(0)))
        if contract.capability.endswith(".undo"):
            return self._final(mid, self._undo(contract, outgoing))
        body: dict[str, Any] = {"value": next(self.world.values)}
        if contract.side_effects:
            effect = Effect(f"e{len(self.world.effects) + 1}", self.name, mid)
            self.world.effects[effect.effect_id] = effect
            body["effect_id"] = effect.effect_id
        answer = Answer(body, None, contract.pricing.price_per_call)
        if fault == "garbage":
            answer.raw = b"<html>502 Bad Gateway</html>"
        elif fault == "overprice":
            answer.stated_price = Decimal("999999")
        return self._final(mid, answer)

    def _undo(self, contract: Contract, outgoing: Outgoing) -> Answer:
        effect = self.world.effects.get(str(outgoing.payload.get("effect_id")))
        if effect is None or effect.unit != self.name:
            return Answer({}, "declined", Decimal(0))
        if not effect.undone:
            self.world.undo_log.append(effect.effect_id)
        effect.undone = 1  # idempotent: undoing twice is undoing once
        return Answer({"effect_id": effect.effect_id}, None, contract.pricing.price_per_call)

    def _final(self, mid: str, answer: Answer) -> Answer:
        self.memory[mid] = answer
        return answer


@dataclass
class World:
    """Units, the journey log and a clock; faults and crashes from a schedule."""

    contracts: list[Contract]
    faults: Iterable[str] = ()
    crash_at: frozenset[int] = frozenset()
    # saves (by op number) that return as if committed but are lost: the fault the ten-minute
    # three-broker chaos run showed (a call sent whose saved state is on no replica)
    lost_saves: frozenset[int] = frozenset()
    now_ms: float = 1_000_000.0
    effects: dict[str, Effect] = field(default_factory=dict)
    saved: bytes | None = None
    answered: dict[str, Answer] = field(default_factory=dict)
    undo_log: list[str] = field(default_factory=list)
    history: list[tuple[str, int]] = field(default_factory=list)
    life: int = 0
    ops: int = 0

    def __post_init__(self) -> None:
        self.catalog = Catalog(self.contracts)
        self.units = {c.unit: FakeUnit(c.unit, self) for c in self.contracts}
        self._faults = iter(self.faults)
        self.values = itertools.count(1)

    # -- what the engine sees --------------------------------------------------------
    def engine(self) -> JourneyEngine:
        """A new gateway process: new engine, no memory but the journey log."""
        self.life += 1
        gen = self.life
        return JourneyEngine(
            _Transport(self, gen),
            self.catalog,
            lambda run: self.save(run, gen),
            default_timeout_s=TIMEOUT_S,
            clock=_Clock(self),
            undo_policy=UndoPolicy(
                attempts=4,
                backoff=Backoff(first_s=0.2, max_s=1.0),
                patience_s=PATIENCE_S,
                patient_backoff=Backoff(first_s=1.0, max_s=10.0),
            ),
        )

    def _op(self, gen: int) -> None:
        if gen != self.life:
            raise Crash  # a dead process does nothing more
        self.ops += 1
        if self.ops in self.crash_at:
            self.life += 1  # from now on this process is dead
            raise Crash

    async def save(self, run: JourneyRun, gen: int) -> int:
        self._op(gen)
        run.revision += 1
        if self.ops in self.lost_saves:
            await asyncio.sleep(0)
            return 0
        self.saved = run.model_dump_json().encode()
        self.history.append((run.status, len(run.unsettled)))
        await asyncio.sleep(0)
        return 0

    async def request(
        self, gen: int, contract: Contract, outgoing: Outgoing, timeout_s: float
    ) -> Reply:
        self._op(gen)
        await asyncio.sleep(0)
        unit = self.units[contract.unit]
        unit.drain()  # what was queued before this request is served first
        fault = next(self._faults, "ok")
        if fault == "late":
            unit.queue.append((contract, outgoing))
            self.now_ms += timeout_s * 1000 + 1
            raise TimeoutError
        answer = unit.serve(contract, outgoing, fault)
        if fault == "lost_reply":
            self.now_ms += timeout_s * 1000
            raise TimeoutError
        if fault == "crash_after":
            self.life += 1
            raise Crash
        self.now_ms += 1
        self.answered[outgoing.message_id] = answer
        return _reply(contract, answer)

    # -- what a test looks at --------------------------------------------------------
    def last_saved(self) -> JourneyRun:
        assert self.saved is not None
        return JourneyRun.model_validate_json(self.saved)

    def settle_queues(self) -> None:
        """Later: every queued request reaches its unit (past its deadline by then)."""
        self.now_ms += 60_000
        for unit in self.units.values():
            unit.drain()


def _reply(contract: Contract, answer: Answer) -> Reply:
    headers = {
        h.UNIT: contract.unit,
        h.PRICE: f"{answer.price:.6f}",
        h.COST: f"{contract.pricing.cost_per_call:.6f}",
        h.HANDLER_MS: "0.5",
    }
    if answer.error is not None:
        headers[h.ERROR] = answer.error
        headers[h.ERROR_DETAIL] = f"{answer.error} (simulated)"
    if answer.stated_price is not None:
        headers[h.PRICE] = f"{answer.stated_price:.6f}"
    body = answer.raw if answer.raw is not None else json.dumps(answer.body).encode()
    return Reply(body=body, headers=headers, latency_ms=1.0)


@dataclass
class _Transport:
    world: World
    gen: int

    async def request(self, contract: Contract, outgoing: Outgoing, timeout_s: float) -> Reply:
        return await self.world.request(self.gen, contract, outgoing, timeout_s)


@dataclass
class _Clock:
    world: World

    def now_ms(self) -> float:
        return self.world.now_ms

    async def sleep(self, seconds: float) -> None:
        self.world.now_ms += seconds * 1000
        await asyncio.sleep(0)


async def live_through(
    world: World, definition: JourneyDefinition, max_lives: int = 12
) -> JourneyRun:
    """Start a run, then keep restarting the gateway after every crash until the run ends."""
    first = world.engine()
    run = first.new_run(definition, {"x": 1})
    world.saved = run.model_dump_json().encode()  # accepted: durable before it runs
    for life in range(max_lives):
        run = world.last_saved()
        if run.finished:
            break
        engine = world.engine()
        try:
            await engine.run(definition, run, fresh=life == 0)
        except Crash:
            await _bury(asyncio.current_task())
            world.now_ms += RESTART_S * 1000  # the new gateway is up after calls' deadlines
    world.settle_queues()
    return world.last_saved()


async def _bury(me: asyncio.Task[Any] | None) -> None:
    """What the dead process still had running ends here (it can do nothing more)."""
    others = [t for t in asyncio.all_tasks() if t is not me]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


def check_invariants(  # noqa: PLR0912 (one list of promises reads best as one function)
    world: World, definition: JourneyDefinition, run: JourneyRun
) -> None:
    """What the platform promises about money, whatever happened on the way."""
    assert run.finished, f"run ended {run.status}"
    calls = {c.message_id: c for s in run.steps for c in s.calls}
    undos = [u for c in calls.values() for u in c.undos]
    kept: dict[str, list[Effect]] = {}
    for effect in world.effects.values():
        call = calls.get(effect.message_id)
        assert call is not None, f"side effect {effect} was never recorded in the run"
        used = run.error is None and call.used  # completed (then maybe parked for another)
        parked = run.status == "compensation_failed" and effect.message_id in run.parked
        if used:
            assert effect.undone == 0, f"{effect} was used by the completed run yet undone"
        elif not parked:
            assert effect.undone == 1, f"{effect} is a side effect of a {run.status} run, kept"
        if not effect.undone:
            kept.setdefault(effect.step, []).append(effect)
    for step, effects in kept.items():
        assert len(effects) <= 1 or run.status == "compensation_failed", (
            f"step {step} kept {len(effects)} side effects: {effects}"
        )
    if run.status != "compensation_failed":
        assert not run.parked
    if run.status == "completed":
        for step in run.steps:
            spec = definition.step(step.id)
            effects = kept.get(step.id, [])
            if step.status == "ok" and world.catalog.get(spec.capability, step.unit):
                contract = world.catalog.get(spec.capability, step.unit)
                assert contract is not None
                if contract.side_effects:
                    assert step.output is not None
                    assert [e.effect_id for e in effects] == [step.output["effect_id"]]
    ids = [c.message_id for c in [*calls.values(), *undos]]
    assert len(ids) == len(set(ids)), "a message id was used for two calls"
    for call in [*calls.values(), *undos]:
        answer = world.answered.get(call.message_id)
        if call.error == "invalid_reply":
            assert call.price == 0, f"{call.message_id}: a reply breaking the contract billed"
        elif answer is not None and call.outcome not in ("timeout", "pending", "interrupted"):
            assert call.price == answer.price, f"{call.message_id} billed {call.price}"
    assert run.bill is not None
    billed = sum((c.price for c in [*calls.values(), *undos]), Decimal(0))
    assert run.bill.total_price == billed
