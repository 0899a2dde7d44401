"""Journey definitions checked against the contracts they call, from YAML files or text."""

from __future__ import annotations

import graphlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.catalog import Catalog
from gateway.definition.expressions import parse_ref
from gateway.definition.model import (
    JourneyDefinition,
    StepDefinition,
)
from mbs.contract import Contract
from mbs.errors import JourneyDefinitionError, MalformedDefinition

JOURNEYS_DIR = Path(__file__).parents[1] / "journeys"


def check(definition: JourneyDefinition, catalog: Catalog, source: str) -> None:
    """Refuse a definition that calls unknown capabilities, loops, or maps fields wrongly."""
    problems: list[str] = []
    ids = {step.id for step in definition.steps}
    for step in definition.steps:
        where = f"{source}: step {step.id!r}"
        if step.capability not in catalog:
            problems.append(f"{where}: unknown capability {step.capability!r}")
            continue
        contract = catalog.home(step.capability)
        problems += [f"{where}: runs after unknown step {a!r}" for a in step.after if a not in ids]
        problems += _check_mapping(step.input, contract, definition, catalog, where, step.id)
        problems += _check_condition(step, definition, where)
        problems += _check_providers(step, catalog, where)
        problems += _check_compensation(step, contract, definition, catalog, where)
    try:
        tuple(graphlib.TopologicalSorter(definition.graph()).static_order())
    except graphlib.CycleError as exc:
        problems.append(f"{source}: steps form a cycle: {' -> '.join(exc.args[1])}")
    if problems:
        raise JourneyDefinitionError("invalid journey definition:\n  " + "\n  ".join(problems))


def _ancestors(definition: JourneyDefinition, step_id: str) -> set[str]:
    seen: set[str] = set()
    todo = list(definition.step(step_id).after) if step_id in definition.graph() else []
    while todo:
        current = todo.pop()
        if current not in seen and current in definition.graph():
            seen.add(current)
            todo += definition.step(current).after
    return seen


def _check_condition(step: StepDefinition, definition: JourneyDefinition, where: str) -> list[str]:
    condition = step.condition
    if condition is None:
        return []
    ref = parse_ref(condition.ref)
    if ref and ref[0] == "steps" and ref[1][0] not in _ancestors(definition, step.id):
        return [f"{where}: condition reads steps.{ref[1][0]} but does not run after it"]
    if ref and ref[0] == "self":
        return [f"{where}: a condition cannot read $self (the step has not run yet)"]
    return []


def _check_providers(step: StepDefinition, catalog: Catalog, where: str) -> list[str]:
    offered = {c.unit: c for c in catalog.providers(step.capability)}
    chosen = step.providers
    problems = [
        f"{where}: {unit!r} does not offer {step.capability} (providers: {sorted(offered)})"
        for unit in [*chosen.units, *chosen.weights]
        if unit not in offered
    ]
    if chosen.shadow is not None:
        shadow = offered.get(chosen.shadow)
        if shadow is None:
            problems.append(f"{where}: shadow {chosen.shadow!r} does not offer {step.capability}")
        elif not shadow.supports_dry_run:
            problems.append(f"{where}: shadow {chosen.shadow!r} declares no dry run")
    if chosen.policy == "weighted" and not chosen.weights:
        problems.append(f"{where}: policy 'weighted' needs weights per unit")
    return problems


def _check_compensation(
    step: StepDefinition,
    contract: Contract,
    definition: JourneyDefinition,
    catalog: Catalog,
    where: str,
) -> list[str]:
    if step.compensate is None:
        return []
    capability = step.compensate.capability or contract.compensation
    if capability is None:
        return [f"{where}: compensate given but {contract.capability} declares no compensation"]
    if capability not in catalog:
        return [f"{where}: unknown compensation capability {capability!r}"]
    return _check_mapping(
        step.compensate.input,
        catalog.home(capability),
        definition,
        catalog,
        f"{where} (compensation)",
        step.id,
        own=contract,
    )


def _check_mapping(
    mapping: dict[str, Any],
    contract: Contract,
    definition: JourneyDefinition,
    catalog: Catalog,
    where: str,
    step_id: str,
    own: Contract | None = None,
) -> list[str]:
    problems: list[str] = []
    target = contract.request.get("properties", {})
    missing = [f for f in contract.request.get("required", []) if f not in mapping]
    if missing:
        problems.append(
            f"{where}: input lacks required field(s) {missing} of {contract.capability}"
        )
    for field, value in mapping.items():
        if field not in target:
            problems.append(f"{where}: {contract.capability} has no request field {field!r}")
            continue
        ref = parse_ref(value)
        if ref is None or ref[0] == "input":
            continue
        if ref[0] == "self":
            producer, path = own, ref[1]
            if producer is None:
                problems.append(f"{where}: $self is only for compensation input")
                continue
        else:
            source_step, path = ref[1][0], ref[1][1:]
            if source_step not in _ancestors(definition, step_id):
                problems.append(f"{where}: reads steps.{source_step} but does not run after it")
                continue
            source_capability = definition.step(source_step).capability
            if source_capability not in catalog:
                continue  # reported once, at the step that names it
            producer = catalog.home(source_capability)
        if path:
            problems += _check_field(
                producer, path[0], target[field], f"{where}: {field} <- {value}"
            )
    return problems


def _check_field(producer: Contract, name: str, target: dict[str, Any], where: str) -> list[str]:
    produced = producer.reply.get("properties", {}).get(name)
    if produced is None:
        return [f"{where}: {producer.capability} replies have no field {name!r}"]
    if not _types_fit(produced, target):
        return [f"{where}: type {_type(produced)} does not fit {_type(target)}"]
    return []


def _type(schema: dict[str, Any]) -> str:
    if "type" in schema:
        return str(schema["type"])
    return "|".join(str(s.get("type", "?")) for s in schema.get("anyOf", [])) or "any"


def _types_fit(source: dict[str, Any], target: dict[str, Any]) -> bool:
    src, dst = set(_type(source).split("|")), set(_type(target).split("|"))
    if "any" in src or "any" in dst or "?" in src or "?" in dst:
        return True
    if "integer" in src and "number" in dst:
        src.add("number")
    return src <= dst


class _PlainLoader(yaml.SafeLoader):
    """Safe YAML without anchors and aliases: a few hundred bytes of aliases expand to
    gigabytes (`safe_load` does not stop that), and a journey never needs them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            mark = event.start_mark
            raise yaml.YAMLError(
                "anchors and aliases (&, *) are not accepted (line "
                f"{mark.line + 1}, column {mark.column + 1}); write the value out"
            )
        return super().compose_node(parent, index)


def parse(text: str, source: str, catalog: Catalog) -> JourneyDefinition:
    """Validate and check one journey document (YAML or JSON)."""
    try:
        definition = JourneyDefinition.model_validate(yaml.load(text, Loader=_PlainLoader))
    except yaml.YAMLError as exc:
        raise MalformedDefinition(f"{source}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        raise JourneyDefinitionError(f"{source}: {exc}") from exc
    check(definition, catalog, source)
    return definition


def load_file(path: Path, catalog: Catalog) -> JourneyDefinition:
    """Read, validate and check one journey YAML file."""
    return parse(path.read_text(), str(path), catalog)


def load_all(catalog: Catalog, directory: Path = JOURNEYS_DIR) -> dict[str, JourneyDefinition]:
    """Every journey in the directory, keyed by name."""
    loaded = [load_file(path, catalog) for path in sorted(directory.glob("*.yaml"))]
    return {definition.name: definition for definition in loaded}
