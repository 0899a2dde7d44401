"""Journey definitions are checked against the contracts at load time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import contracts
from gateway.catalog import Catalog
from gateway.definition import JOURNEYS_DIR, load_all, load_file
from mbs import JourneyDefinitionError
from mbs.errors import MalformedDefinition

CATALOG = Catalog(contracts.all_contracts())


def write(tmp_path: Path, doc: dict[str, object]) -> Path:
    path = tmp_path / "journey.yaml"
    path.write_text(json.dumps(doc))  # YAML 1.2 reads JSON; shared dicts make no aliases
    return path


def journey(*steps: dict[str, object]) -> dict[str, object]:
    return {"name": "t", "version": 1, "steps": list(steps)}


QUOTE = {
    "id": "quote",
    "capability": "pricing.quote",
    "input": {"sku": "$input.sku", "quantity": "$input.quantity"},
}


def reserve(**overrides: object) -> dict[str, object]:
    step: dict[str, object] = {
        "id": "reserve",
        "capability": "inventory.reserve",
        "after": ["quote"],
        "input": {
            "order_id": "$input.order_id",
            "sku": "$steps.quote.sku",
            "quantity": "$steps.quote.quantity",
        },
    }
    step.update(overrides)
    return step


def test_shipped_journeys_load() -> None:
    loaded = load_all(CATALOG, JOURNEYS_DIR)
    assert "quote-and-reserve" in loaded
    assert [s.id for s in loaded["quote-and-reserve"].steps] == ["quote", "reserve"]


def test_valid_two_step_journey_loads(tmp_path: Path) -> None:
    definition = load_file(write(tmp_path, journey(QUOTE, reserve())), CATALOG)
    assert definition.graph() == {"quote": set(), "reserve": {"quote"}}


@pytest.mark.parametrize(
    ("steps", "reason"),
    [
        ([{**QUOTE, "capability": "pricing.guess"}], "unknown capability 'pricing.guess'"),
        ([QUOTE, reserve(after=["quote", "nope"])], "runs after unknown step 'nope'"),
        ([{**QUOTE, "after": ["reserve"]}, reserve()], "cycle"),
        ([QUOTE, reserve(after=[])], "reads steps.quote but does not run after it"),
        (
            [QUOTE, reserve(input={"order_id": "x", "sku": "$steps.quote.colour", "quantity": 1})],
            "replies have no field 'colour'",
        ),
        (
            [QUOTE, reserve(input={"order_id": "x", "sku": "a", "quantity": "$steps.quote.sku"})],
            "type string does not fit integer",
        ),
        ([QUOTE, reserve(input={"order_id": "x", "sku": "a"})], "lacks required field"),
        (
            [QUOTE, reserve(input={**reserve()["input"], "colour": "red"})],  # type: ignore[dict-item]
            "has no request field 'colour'",
        ),
    ],
)
def test_bad_definitions_are_refused_with_reason(
    tmp_path: Path, steps: list[dict[str, object]], reason: str
) -> None:
    path = write(tmp_path, journey(*steps))
    with pytest.raises(JourneyDefinitionError) as refused:
        load_file(path, CATALOG)
    assert reason in str(refused.value)
    assert str(path) in str(refused.value)


def test_not_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed")
    with pytest.raises(JourneyDefinitionError, match="not valid YAML"):
        load_file(path, CATALOG)


def test_duplicate_step_ids_are_refused(tmp_path: Path) -> None:
    with pytest.raises(JourneyDefinitionError, match="repeated"):
        load_file(write(tmp_path, journey(QUOTE, {**QUOTE})), CATALOG)


@pytest.mark.parametrize(
    "text",
    [
        "name: &n t\nversion: 1\nsteps: []\nother: *n",
        "a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]",  # the start of a billion laughs
    ],
)
def test_yaml_anchors_and_aliases_are_refused_before_expansion(tmp_path: Path, text: str) -> None:
    path = tmp_path / "journey.yaml"
    path.write_text(text)
    with pytest.raises(MalformedDefinition, match="anchors and aliases"):
        load_file(path, CATALOG)


def test_a_step_reading_from_a_step_of_an_unknown_capability_is_refused_not_crashed(
    tmp_path: Path,
) -> None:
    unknown = {"id": "ghost", "capability": "nobody.offers", "input": {}}
    reader = {
        "id": "quote",
        "capability": "pricing.quote",
        "after": ["ghost"],
        "input": {"sku": "$steps.ghost.sku", "quantity": 1},
    }
    with pytest.raises(JourneyDefinitionError, match=r"unknown capability 'nobody\.offers'"):
        load_file(write(tmp_path, journey(unknown, reader)), CATALOG)
