"""Journey definitions: YAML files validated against the contracts they call."""

from __future__ import annotations

import graphlib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mbs.contract import Contract
from mbs.errors import JourneyDefinitionError

JOURNEYS_DIR = Path(__file__).parent / "journeys"
_REF = re.compile(r"^\$(input|steps)\.([A-Za-z0-9_.-]+)$")


class StepDefinition(BaseModel):
    """One call of a capability within a journey."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    capability: str
    input: dict[str, Any] = Field(default_factory=dict)
    after: list[str] = Field(default_factory=list)
    timeout: float | None = Field(default=None, gt=0, description="Seconds to wait for a reply.")


class JourneyDefinition(BaseModel):
    """A named, versioned composition of steps (a DAG through `after`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    version: int = Field(ge=1)
    description: str = ""
    steps: list[StepDefinition] = Field(min_length=1)
    output: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_steps(self) -> JourneyDefinition:
        ids = [step.id for step in self.steps]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"step ids must be unique; repeated: {dupes}")
        return self

    def step(self, step_id: str) -> StepDefinition:
        return next(step for step in self.steps if step.id == step_id)

    def graph(self) -> dict[str, set[str]]:
        return {step.id: set(step.after) for step in self.steps}


def parse_ref(value: Any) -> tuple[str, list[str]] | None:
    """`$steps.quote.total` -> ("steps", ["quote", "total"]); literals -> None."""
    if not isinstance(value, str):
        return None
    match = _REF.match(value)
    return (match.group(1), match.group(2).split(".")) if match else None


def check(definition: JourneyDefinition, catalog: dict[str, Contract], source: str) -> None:
    """Refuse a definition that calls unknown capabilities, loops, or maps fields wrongly."""
    problems: list[str] = []
    ids = {step.id for step in definition.steps}
    for step in definition.steps:
        where = f"{source}: step {step.id!r}"
        contract = catalog.get(step.capability)
        if contract is None:
            problems.append(f"{where}: unknown capability {step.capability!r}")
            continue
        problems += [f"{where}: runs after unknown step {a!r}" for a in step.after if a not in ids]
        problems += _check_mapping(step, contract, definition, catalog, where)
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


def _check_mapping(
    step: StepDefinition,
    contract: Contract,
    definition: JourneyDefinition,
    catalog: dict[str, Contract],
    where: str,
) -> list[str]:
    problems: list[str] = []
    target = contract.request.get("properties", {})
    missing = [f for f in contract.request.get("required", []) if f not in step.input]
    if missing:
        problems.append(
            f"{where}: input lacks required field(s) {missing} of {contract.capability}"
        )
    for field, value in step.input.items():
        if field not in target:
            problems.append(f"{where}: {contract.capability} has no request field {field!r}")
            continue
        ref = parse_ref(value)
        if ref is None or ref[0] != "steps":
            continue
        source_step, path = ref[1][0], ref[1][1:]
        if source_step not in _ancestors(definition, step.id):
            problems.append(f"{where}: reads steps.{source_step} but does not run after it")
            continue
        producer = catalog.get(definition.step(source_step).capability)
        if producer is None or not path:
            continue
        produced = producer.reply.get("properties", {}).get(path[0])
        if produced is None:
            problems.append(
                f"{where}: {field} <- {value}: {producer.capability} replies have no field "
                f"{path[0]!r}"
            )
        elif not _types_fit(produced, target[field]):
            problems.append(
                f"{where}: {field} <- {value}: type {_type(produced)} does not fit "
                f"{_type(target[field])}"
            )
    return problems


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


def load_file(path: Path, catalog: dict[str, Contract]) -> JourneyDefinition:
    """Read, validate and check one journey YAML file."""
    try:
        raw = yaml.safe_load(path.read_text())
        definition = JourneyDefinition.model_validate(raw)
    except yaml.YAMLError as exc:
        raise JourneyDefinitionError(f"{path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        raise JourneyDefinitionError(f"{path}: {exc}") from exc
    check(definition, catalog, str(path))
    return definition


def load_all(
    catalog: dict[str, Contract], directory: Path = JOURNEYS_DIR
) -> dict[str, JourneyDefinition]:
    """Every journey in the directory, keyed by name."""
    loaded = [load_file(path, catalog) for path in sorted(directory.glob("*.yaml"))]
    return {definition.name: definition for definition in loaded}
