"""The journey engine's decisions, one scripted fault at a time, without a broker: failover,
retries, message ids, settling unknown calls, compensation order, parking a failed undo."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from gateway.definition import JourneyDefinition
from gateway.models import JourneyRun
from tests.engine_world import (
    PATIENCE_S,
    TIMEOUT_S,
    World,
    check_invariants,
    contract,
    live_through,
)


def _step(i: int, *, effects: bool, after: tuple[int, ...] = (), **extra: Any) -> dict[str, Any]:
    step: dict[str, Any] = {
        "id": f"s{i}",
        "capability": f"c{i}.act",
        "after": [f"s{a}" for a in after],
        "input": {"x": "$input.x"},
        **extra,
    }
    if effects:
        step["compensate"] = {"input": {"effect_id": "$self.effect_id"}}
    return step


def _world(
    steps: list[dict[str, Any]], faults: list[str], crashes: frozenset[int] = frozenset()
) -> tuple[World, JourneyDefinition]:
    contracts = []
    for step in steps:
        effects = "compensate" in step
        i = step["capability"][1:].split(".")[0]
        for unit in step.get("providers", {}).get("units") or [f"c{i}"]:
            contracts.append(contract(unit, f"c{i}.act", side_effects=effects, price="0.010"))
            if effects:
                contracts.append(contract(unit, f"c{i}.undo", side_effects=True, price="0.010"))
    definition = JourneyDefinition(name="scripted", version=1, steps=steps)
    return World(contracts, faults=faults, crash_at=crashes), definition


def _run(world: World, definition: JourneyDefinition) -> JourneyRun:
    run = asyncio.run(live_through(world, definition))
    check_invariants(world, definition, run)
    return run


def _declared(world: World, *served: tuple[str, str]) -> Decimal:
    """What the bill must total: the contracts' `price_per_call` of each (capability, unit)
    that served a call, not the sum of the bill's own lines."""
    total = Decimal(0)
    for capability, unit in served:
        contract = world.catalog.get(capability, unit)
        assert contract is not None, (capability, unit)
        total += contract.pricing.price_per_call
    return total


def _total(run: JourneyRun) -> Decimal:
    assert run.bill is not None
    return run.bill.total_price


FAILOVER = {"policy": "failover", "units": ["c0", "p0"], "failover": True}


def test_a_business_error_fails_over_to_the_next_provider() -> None:
    world, definition = _world([_step(0, effects=True, providers=FAILOVER)], ["business"])
    run = _run(world, definition)
    assert run.status == "completed"
    assert [(c.unit, c.outcome) for c in run.steps[0].calls] == [
        ("c0", "business_error"),
        ("p0", "ok"),
    ]
    assert run.steps[0].unit == "p0"
    assert _total(run) == _declared(world, ("c0.act", "p0")), "the refusal is not billed"


def test_without_failover_a_business_error_fails_the_run() -> None:
    providers = {**FAILOVER, "failover": False}
    world, definition = _world([_step(0, effects=True, providers=providers)], ["business"])
    run = _run(world, definition)
    assert run.status == "failed"
    assert [c.unit for c in run.steps[0].calls] == ["c0"]
    assert _total(run) == 0


def test_a_retryable_error_is_retried_under_a_fresh_message_id() -> None:
    step = _step(0, effects=True, retry={"attempts": 3, "backoff_ms": 10})
    world, definition = _world([step], ["retryable", "failed"])
    run = _run(world, definition)
    assert run.status == "completed"
    ids = [c.message_id for c in run.steps[0].calls]
    assert ids == [f"{run.run_id}:s0:c0:{n}" for n in (1, 2, 3)]
    assert [c.outcome for c in run.steps[0].calls] == ["retryable", "failed", "ok"]
    assert _total(run) == _declared(world, ("c0.act", "c0")), "only the served attempt is billed"


def test_a_reply_lost_after_the_work_is_settled_and_the_work_used_once() -> None:
    world, definition = _world([_step(0, effects=True)], ["lost_reply"])
    run = _run(world, definition)
    assert run.status == "completed"
    assert len(world.effects) == 1
    assert run.steps[0].output == {"value": 1, "effect_id": "e1"}
    assert _total(run) == _declared(world, ("c0.act", "c0")), "the work is billed once"


def test_a_provider_down_serves_the_last_chance_once_back_within_the_journey_deadline() -> None:
    world, definition = _world([_step(0, effects=True)], ["late"])  # queued, unit away
    run = _run(world, definition)
    assert run.status == "completed", "failed while the journey's deadline still had room"
    assert len(world.effects) == 1
    call = run.steps[0].calls[0]
    assert (call.outcome, call.deadline_ms) == ("ok", run.deadline_ms)


def test_a_pure_step_whose_provider_is_down_waits_for_it_within_the_deadline() -> None:
    world, definition = _world([_step(0, effects=False)], ["late"])
    run = _run(world, definition)
    assert run.status == "completed", "failed at the step's timeout with the deadline ahead"


def test_a_reply_lost_on_an_attempt_with_more_to_come_is_settled_not_repeated() -> None:
    step = _step(0, effects=True, retry={"attempts": 2, "backoff_ms": 10})
    world, definition = _world([step], ["lost_reply"])
    run = _run(world, definition)
    assert run.status == "completed"
    assert len(run.steps[0].calls) == 1, "a second attempt while the first was done"
    assert len(world.effects) == 1


def test_an_attempt_with_more_to_come_keeps_the_steps_own_deadline() -> None:
    step = _step(0, effects=False, retry={"attempts": 2, "backoff_ms": 10})
    world, definition = _world([step], ["late", "ok"])
    run = _run(world, definition)
    assert run.status == "completed"
    first, second = run.steps[0].calls
    assert first.deadline_ms is not None
    assert first.deadline_ms < run.deadline_ms
    assert second.deadline_ms == run.deadline_ms


def test_a_crash_after_the_unit_did_the_work_resumes_without_doing_it_twice() -> None:
    world, definition = _world(
        [_step(0, effects=True), _step(1, effects=True, after=(0,))], ["crash_after"]
    )
    run = _run(world, definition)
    assert run.status == "completed"
    assert len(world.effects) == 2
    assert world.life > 2  # it did crash and resume
    assert len(run.steps[0].calls) == 1
    assert _total(run) == _declared(world, ("c0.act", "c0"), ("c1.act", "c1"))


def test_completed_steps_are_undone_newest_first_when_a_later_one_fails() -> None:
    steps = [
        _step(0, effects=True),
        _step(1, effects=True, after=(0,)),
        _step(2, effects=False, after=(1,)),
    ]
    world, definition = _world(steps, ["ok", "ok", "business"])
    run = _run(world, definition)
    assert run.status == "failed"
    assert run.compensated is True
    assert world.undo_log == ["e2", "e1"]
    assert all(s.compensation is not None and s.compensation.outcome == "ok" for s in run.steps[:2])
    done_and_undone = [("c0.act", "c0"), ("c1.act", "c1"), ("c1.undo", "c1"), ("c0.undo", "c0")]
    assert _total(run) == _declared(world, *done_and_undone)


def test_a_parallel_branch_failing_undoes_its_sibling_whatever_its_progress() -> None:
    steps = [_step(0, effects=True), _step(1, effects=False)]  # reserve | fraud, in parallel
    for faults in (["ok", "business"], ["business", "ok"], ["late", "business"]):
        world, definition = _world(steps, list(faults))
        run = _run(world, definition)
        assert run.status == "failed", faults
        assert all(e.undone == 1 for e in world.effects.values()), faults


def test_an_undo_that_keeps_failing_is_parked_not_reported_compensated() -> None:
    steps = [_step(0, effects=True), _step(1, effects=False, after=(0,))]
    world, definition = _world(steps, ["ok", "business"] + ["business"] * 4)
    run = _run(world, definition)
    assert run.status == "compensation_failed"
    assert run.compensated is False
    assert run.parked == [f"{run.run_id}:s0:c0:1"]
    assert len(run.steps[0].calls[0].undos) == 4
    assert world.effects["e1"].undone == 0
    assert _total(run) == _declared(world, ("c0.act", "c0")), "refused undos are not billed"


def test_an_undo_whose_provider_is_silent_is_pursued_until_it_answers_not_parked() -> None:
    """A provider that is down (restarting, cut off) cannot say no: its undo is asked again,
    in rounds, after the caller is told, until it answers; silence is never a refusal."""
    steps = [_step(0, effects=True), _step(1, effects=False, after=(0,))]
    silent = 10  # more silent undo attempts than `attempts` (4): parked before the fix
    world, definition = _world(steps, ["ok", "business"] + ["late"] * silent + ["ok"])
    run = _run(world, definition)
    assert run.status == "failed"
    assert run.compensated is True
    assert not run.parked
    assert not run.unsettled
    assert ("failed", 1) in world.history, "the caller was told before the undo was done"
    assert world.effects["e1"].undone == 1
    undos = run.steps[0].calls[0].undos
    assert [u.outcome for u in undos] == ["timeout"] * silent + ["ok"]


def test_a_provider_silent_past_the_patience_gets_its_side_effect_parked() -> None:
    steps = [_step(0, effects=True), _step(1, effects=False, after=(0,))]
    world, definition = _world(steps, ["ok", "business"] + ["late"] * 500)
    run = _run(world, definition)
    assert run.status == "compensation_failed"
    assert run.compensated is False
    assert run.parked == [f"{run.run_id}:s0:c0:1"]
    decided = run.created_ms + (run.latency_ms or 0)
    undos = run.steps[0].calls[0].undos
    last_sent = undos[-1].deadline_ms - TIMEOUT_S * 1000
    assert PATIENCE_S * 1000 - 12_000 <= last_sent - decided <= PATIENCE_S * 1000, (
        "asked until the patience was over, not past it"
    )
    assert 4 < len(undos) < 40, "rounds apart, not a tight loop"


def test_a_side_effect_whose_save_was_lost_is_found_and_undone_by_the_next_life() -> None:
    """The three-broker chaos run: a gateway saved a run before its reserve call, the save
    came back as committed yet reached no replica, the reserve was done, the gateway died;
    the next owner took the run up from the state before, past its deadline, and timed it out
    without asking anything: the reservation was held for good. Now the life that ends a
    resumed run asks every step it did not get to under the ids an earlier life could have
    used, with a deadline already past: the unit's memory tells what it did."""
    quote = _step(0, effects=False)
    reserve = _step(1, effects=True, after=(0,))
    reserve["input"] = {"x": "$steps.s0.value"}  # built from the quote, as in the journeys
    fraud = _step(2, effects=False, after=(0,))
    contracts = [
        contract("c0", "c0.act", side_effects=False, price="0.010"),
        contract("c1", "c1.act", side_effects=True, price="0.010"),
        contract("c1", "c1.undo", side_effects=True, price="0.010"),
        contract("c2", "c2.act", side_effects=False, price="0.010"),
    ]
    definition = JourneyDefinition(
        name="scripted", version=1, timeout=1, steps=[quote, reserve, fraud]
    )
    # ops: 1 quote, 2 the save before the reserve (lost), 3 and 4 reserve and fraud, 5 the
    # save of the outcome (dies there); the next life starts past the run's 1 s deadline
    world = World(contracts, faults=["ok", "ok", "ok"], crash_at=frozenset({5}))
    world.lost_saves = frozenset({2})
    run = _run(world, definition)
    assert run.status == "timed_out"
    assert world.effects["e1"].undone == 1, "the reservation of the lost save was released"
    assert run.compensated is True
    found = [c for c in run.steps[1].calls if c.outcome == "ok"]
    assert [c.message_id for c in found] == [f"{run.run_id}:s1:c1:1"]
    done = [("c0.act", "c0"), ("c1.act", "c1"), ("c2.act", "c2"), ("c1.undo", "c1")]
    assert _total(run) == _declared(world, *done), "what the first life had done, once each"


def test_a_step_no_life_did_is_refused_for_good_when_asked_after_its_run() -> None:
    quote = _step(0, effects=False)
    reserve = _step(1, effects=True, after=(0,))
    definition = JourneyDefinition(name="scripted", version=1, timeout=1, steps=[quote, reserve])
    contracts = [
        contract("c0", "c0.act", side_effects=False, price="0.010"),
        contract("c1", "c1.act", side_effects=True, price="0.010"),
        contract("c1", "c1.undo", side_effects=True, price="0.010"),
    ]
    world = World(contracts, faults=["ok"], crash_at=frozenset({2}))  # dies saving the reserve
    run = _run(world, definition)
    assert run.status == "timed_out"
    assert not world.effects, "nothing was reserved"
    asked = run.steps[1].calls
    assert [c.outcome for c in asked] == ["failed"]
    assert asked[0].error == "deadline_exceeded", "refused: that id can never be done now"
    assert _total(run) == _declared(world, ("c0.act", "c0"))


def test_the_provider_order_is_fixed_when_a_step_starts_and_kept_on_resume() -> None:
    fastest = {"policy": "fastest", "units": ["c0", "p0"], "failover": True}
    # the gateway dies sending to c0; restarted past that call's deadline, it settles it
    # (c0 refuses it: never started), which is not an attempt; c0 then declines, p0 serves
    world, definition = _world(
        [_step(0, effects=True, providers=fastest)],
        ["ok", "business", "ok"],
        crashes=frozenset({2}),
    )
    run = _run(world, definition)
    assert run.steps[0].providers == ["c0", "p0"]
    calls = [(c.unit, c.outcome) for c in run.steps[0].calls]
    assert calls == [("c0", "interrupted"), ("c0", "business_error"), ("p0", "ok")]
    assert _total(run) == _declared(world, ("c0.act", "p0"))


def test_a_silent_provider_does_not_hold_the_caller_its_call_is_settled_after() -> None:
    step = _step(0, effects=True, providers=FAILOVER)
    # c0 swallows the request and the quick re-ask; p0 serves; c0 stays silent a while more
    world, definition = _world([step], ["late", "late", "ok", "late", "late", "late"])
    run = _run(world, definition)
    assert ("completed", 1) in world.history, "decided while c0's call was still unsettled"
    assert run.status == "completed"
    assert not run.unsettled
    assert run.steps[0].calls[0].effect == "none", "c0 refused its request: past its deadline"
    assert [e.unit for e in world.effects.values()] == ["p0"]
    assert _total(run) == _declared(world, ("c0.act", "p0"))


def test_a_reply_that_breaks_the_contract_is_the_providers_failure_billed_nothing() -> None:
    step = _step(0, effects=False, retry={"attempts": 2, "backoff_ms": 10})
    world, definition = _world([step], ["garbage", "ok"])
    run = _run(world, definition)
    assert run.status == "completed"
    first, second = run.steps[0].calls
    assert (first.outcome, first.error, first.price) == ("failed", "invalid_reply", 0)
    assert "not JSON" in first.detail
    assert second.outcome == "ok"
    assert _total(run) == _declared(world, ("c0.act", "c0"))


def test_the_price_billed_is_the_contracts_whatever_the_header_says() -> None:
    world, definition = _world([_step(0, effects=False)], ["overprice"])
    run = _run(world, definition)
    call = run.steps[0].calls[0]
    assert str(call.price) == "0.010"
    assert "differs from the contract's" in call.detail
    assert run.bill is not None
    assert str(run.bill.total_price) == "0.010"
    assert call.price == _total(run) == _declared(world, ("c0.act", "c0"))


def test_a_side_effect_answered_with_garbage_is_parked_never_assumed() -> None:
    step = _step(0, effects=True, retry={"attempts": 2, "backoff_ms": 10})
    world, definition = _world([step], ["garbage", "ok"])
    run = _run(world, definition)
    assert run.status == "compensation_failed", "was the first charge done? nobody can say"
    assert run.output is not None, "the journey itself completed on the second attempt"
    assert run.parked == [f"{run.run_id}:s0:c0:1"]
    assert _total(run) == _declared(world, ("c0.act", "c0")), "the garbage reply billed nothing"


def test_a_run_is_saved_before_each_side_effect_and_at_its_outcome_only() -> None:
    """Each save is a transaction on the journey log. A pure step's outcome goes with the
    next save: a run taken up again asks it again under the same message id."""
    steps = [
        _step(0, effects=False),
        _step(1, effects=False, after=(0,)),
        _step(2, effects=True, after=(1,)),
        _step(3, effects=False, after=(2,)),
    ]
    world, definition = _world(steps, [])
    run = _run(world, definition)
    assert run.status == "completed"
    assert [status for status, _ in world.history] == ["running", "completed"]


def test_a_crash_after_pure_steps_asks_them_again_under_the_same_message_ids() -> None:
    steps = [_step(0, effects=False), _step(1, effects=True, after=(0,))]
    world, definition = _world(steps, [], crashes=frozenset({2}))  # dies saving before s1
    run = _run(world, definition)
    assert run.status == "completed"
    assert [c.message_id.split(":", 1)[1] for c in run.steps[0].calls] == ["s0:c0:1"]
    assert [c.outcome for c in run.steps[1].calls] == ["ok"]
