"""A journey input is checked against the contracts it feeds before a run starts: a field a
step maps into its request must be what that request's schema says (`quantity: "lots"` is
the caller's mistake, a 422 naming the field, not a business error of the unit it reaches)."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from gateway.calls import MISSING, lookup
from gateway.catalog import Catalog
from gateway.definition import JourneyDefinition
from gateway.definition.expressions import parse_ref
from mbs.contract import Contract


def problems(definition: JourneyDefinition, catalog: Catalog, given: dict[str, Any]) -> list[str]:
    """What is wrong with the input, one line per field (empty: nothing); a field is wrong
    when every provider of the step it feeds would refuse it."""
    found: dict[str, str] = {}
    for step in definition.steps:
        providers = catalog.providers(step.capability)
        for field, expression in step.input.items():
            ref = parse_ref(expression)
            if ref is None or ref[0] != "input":
                continue
            value = lookup(given, ref[1])
            if value is MISSING:
                continue  # reported as missing by the engine
            refusals = [_refusal(c, field, value) for c in providers]
            if refusals and all(refusals):
                found.setdefault(".".join(ref[1]), f"{'.'.join(ref[1])}: {refusals[0]}")
    return [found[name] for name in sorted(found)]


def _refusal(contract: Contract, field: str, value: Any) -> str:
    validator = _field_validator(contract, field)
    if validator is None:
        return ""
    error = next(iter(sorted(validator.iter_errors(value), key=str)), None)
    return "" if error is None else f"{error.message[:160]} (for {contract.capability})"


_VALIDATORS: dict[tuple[str, str, str], Draft202012Validator | None] = {}


def _field_validator(contract: Contract, field: str) -> Draft202012Validator | None:
    """A validator of one request property (with the schema's `$defs` for its references),
    built once per provider, version and field."""
    key = (contract.key, contract.unit, field)
    if key not in _VALIDATORS:
        _VALIDATORS[key] = _build(contract, field)
    return _VALIDATORS[key]


def _build(contract: Contract, field: str) -> Draft202012Validator | None:
    schema = contract.request
    prop = schema.get("properties", {}).get(field)
    if prop is None:
        return None
    return Draft202012Validator({**prop, "$defs": schema.get("$defs", {})})
