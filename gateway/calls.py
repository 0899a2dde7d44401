"""The small pure helpers of the engine: reply outcomes, input mapping, conditions, the bill."""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from gateway.catalog import Catalog
from gateway.definition import Condition, parse_ref
from gateway.models import REDACTED, Bill, JourneyRun, StepLine, UnitLine, rewrite
from gateway.secrets import Vault
from mbs.contract import Contract
from mbs.kafka.rpc import Reply

TECHNICAL = frozenset({"unit_failed", "deadline_exceeded"})
MISSING = object()


def outcome_of(contract: Contract, reply: Reply) -> str:
    """ok, business_error, retryable (a declared retryable code) or failed (technical)."""
    if reply.error is None:
        return "ok"
    if reply.error in TECHNICAL:
        return "failed"
    declared = {e.code: e for e in contract.errors}.get(reply.error)
    return "retryable" if declared is not None and declared.retryable else "business_error"


def lookup(source: Any, path: list[str]) -> Any:
    for part in path:
        if not isinstance(source, dict) or part not in source:
            return MISSING
        source = source[part]
    return source


def resolve(
    mapping: dict[str, Any],
    run: JourneyRun,
    own: dict[str, Any] | None = None,
    *,
    vault: Vault | None = None,
) -> dict[str, Any]:
    """Fill a step's input from the journey input, earlier outputs and (compensation) $self.
    A secret input field is decrypted with `vault`, given only where a request body for a
    unit is built; without it the field reads `***` (the journey's output)."""
    scope = {
        "input": run.input,
        "self": own or {},
        "steps": {s.id: s.output for s in run.steps if s.output is not None},
    }
    out: dict[str, Any] = {}
    for field, value in mapping.items():
        ref = parse_ref(value)
        if ref is None:
            found = value
        elif ref[0] == "input" and run.secrets:
            found = _input(run, ref[1], vault)
        else:
            found = lookup(scope[ref[0]], ref[1])
        out[field] = None if found is MISSING else found
    return out


def _input(run: JourneyRun, path: list[str], vault: Vault | None) -> Any:
    """An input field, the secrets in (or around) it opened by `vault`, else masked."""
    dotted = ".".join(path)
    touched = [s for s in run.secrets if _overlap(s, dotted)]
    if not touched:
        return lookup(run.input, path)
    data = copy.deepcopy(run.input)
    for secret in touched:

        def reveal(value: Any, secret: str = secret) -> Any:
            return REDACTED if vault is None else vault.open(run, secret, value)

        rewrite(data, secret, reveal)
    return lookup(data, path)


def _overlap(a: str, b: str) -> bool:
    return a == b or a.startswith(f"{b}.") or b.startswith(f"{a}.")


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
        undos = [undo for call in step.calls for undo in call.undos]
        for call in [*step.calls, *undos]:
            label = f"{step.id}.compensate" if any(call is u for u in undos) else step.id
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
