"""The AsyncAPI export: valid AsyncAPI 3.0, carries the contracts, matches the published copy."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from pydantic import BaseModel, Field

import contracts
from mbs import Contract, Pricing, Sla, declare
from mbs.contract import asyncapi_document, export

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "contracts" / "published"
SCHEMA_FILE = ROOT / "tests" / "data" / "asyncapi-3.0.0.schema.json"
REGENERATE = "regenerate with `mbs contracts export contracts/published` and commit the result"

CONTRACTS = contracts.all_contracts()
UNITS = sorted({c.unit for c in CONTRACTS})


@pytest.fixture(scope="module")
def validator() -> Validator:
    """The AsyncAPI 3.0.0 schema, under the draft it declares (it bundles every $ref: offline)."""
    schema = json.loads(SCHEMA_FILE.read_text())
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def problems(validator: Validator, document: dict[str, Any]) -> list[str]:
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}" for e in errors]


def resolve(document: dict[str, Any], node: dict[str, Any]) -> Any:
    """Follow local Reference Objects (`{"$ref": "#/..."}`); other nodes come back unchanged."""
    while isinstance(node, dict) and "$ref" in node:
        node = _walk(document, node["$ref"])
    return node


def _walk(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"unexpected non-local $ref {ref!r}"
    node: Any = document
    for part in ref[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"$ref {ref!r} goes through a non-object"
        assert key in node, f"$ref {ref!r} does not resolve"
        node = node[key]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in refs(item)]
    return []


def operation(document: dict[str, Any], contract: Contract, action: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        op
        for op in document["operations"].values()
        if op["x-capability"] == contract.capability and op["action"] == action
    ]
    assert len(found) == 1, f"expected one {action} operation for {contract.key}, got {found}"
    return found[0]


@pytest.mark.parametrize("unit", UNITS)
def test_every_unit_document_is_valid_asyncapi_3(validator: Validator, unit: str) -> None:
    document = asyncapi_document(unit, CONTRACTS)
    assert document["asyncapi"] == "3.0.0"
    assert problems(validator, document) == []


@pytest.mark.parametrize("unit", UNITS)
def test_every_local_ref_resolves(unit: str) -> None:
    document = asyncapi_document(unit, CONTRACTS)
    for ref in refs(document):
        _walk(document, ref)


def test_an_invalid_document_fails_validation(validator: Validator) -> None:
    document = copy.deepcopy(asyncapi_document("shipping", CONTRACTS))
    for op in document["operations"].values():
        del op["action"]
    assert problems(validator, document), "a document without operation actions passed"
    wrong = copy.deepcopy(asyncapi_document("shipping", CONTRACTS))
    wrong["servers"]["kafka"].pop("protocol")
    assert problems(validator, wrong), "a server without a protocol passed"


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: f"{c.unit}:{c.key}")
def test_operations_carry_the_contract(contract: Contract) -> None:
    document = asyncapi_document(contract.unit, CONTRACTS)
    pricing = contract.pricing
    for action in ("receive", "send"):
        op = operation(document, contract, action)
        assert op["x-owner"] == contract.owner
        assert op["x-version"] == contract.version
        assert op["x-sla"] == {
            "p99_ms": contract.sla.p99_ms,
            "availability": contract.sla.availability,
            "measured": "round trip: request sent to reply received, as the caller sees it",
        }
        assert op["x-pricing"] == {
            "price_per_call": str(pricing.price_per_call),
            "currency": pricing.currency,
            "cost_per_call": str(pricing.cost_per_call),
            "cost_per_cpu_second": str(pricing.cost_per_cpu_second),
        }
        assert op["x-errors"] == [e.model_dump() for e in contract.errors]
        assert op["x-side-effects"] is contract.side_effects
        assert op["x-compensation"] == contract.compensation
        assert op["x-supports-dry-run"] is contract.supports_dry_run
        assert op["x-compatibility"] == contract.compatibility


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: f"{c.unit}:{c.key}")
def test_channels_are_the_contract_topics(contract: Contract) -> None:
    document = asyncapi_document(contract.unit, CONTRACTS)
    serve = operation(document, contract, "receive")
    assert resolve(document, serve["channel"])["address"] == contract.request_topic
    assert resolve(document, serve["reply"]["channel"])["address"] == f"mbs.replies.{contract.unit}"
    dead_letter = operation(document, contract, "send")
    assert resolve(document, dead_letter["channel"])["address"] == contract.dlq_topic
    request = resolve(document, serve["messages"][0])
    reply = resolve(document, serve["reply"]["messages"][0])
    for message in (request, reply, resolve(document, dead_letter["messages"][0])):
        assert resolve(document, message["correlationId"])["location"] == (
            "$message.header#/mbs-correlation-id"
        )
    assert resolve(document, request["payload"])["title"] == contract.request["title"]
    assert resolve(document, reply["payload"])["title"] == contract.reply["title"]


def test_a_unit_has_one_reply_channel_for_all_its_capabilities() -> None:
    document = asyncapi_document("shipping", CONTRACTS)
    replies = [c for c in document["channels"].values() if c["address"] == "mbs.replies.shipping"]
    assert len(replies) == 1
    assert len(replies[0]["messages"]) == len([c for c in CONTRACTS if c.unit == "shipping"])


def test_headers_list_the_mbs_headers() -> None:
    schemas = asyncapi_document("payments", CONTRACTS)["components"]["schemas"]
    request, reply = schemas["RequestHeaders"], schemas["ReplyHeaders"]
    assert request["required"] == ["mbs-message-id", "mbs-correlation-id"]
    assert {"mbs-journey-id", "mbs-deadline", "mbs-shadow", "traceparent"} <= set(
        request["properties"]
    )
    assert {"mbs-cost", "mbs-price", "mbs-handler-ms", "mbs-error"} <= set(reply["properties"])
    assert {"mbs-error", "mbs-error-detail"} <= set(schemas["DeadLetterHeaders"]["required"])


def test_info_names_the_unit_owner_and_highest_version() -> None:
    higher = f"{CONTRACTS[0].major}.2.0"
    newer = CONTRACTS[0].model_copy(update={"version": higher})
    info = asyncapi_document(newer.unit, [*CONTRACTS, newer])["info"]
    assert info["title"] == f"{newer.unit} unit"
    assert info["version"] == higher
    assert (info["x-owner"], info["x-kind"]) == (newer.owner, newer.kind)


def test_a_unit_without_contracts_is_refused() -> None:
    with pytest.raises(ValueError, match="no contract of unit 'nobody'"):
        asyncapi_document("nobody", CONTRACTS)


class Address(BaseModel):
    street: str
    country: str = Field(pattern=r"^[A-Z]{2}$")


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


class Tree(BaseModel):
    """A recursive model, so pydantic emits `$defs` and refs back to itself."""

    label: str
    children: list[Tree] = []


class Forest(BaseModel):
    trees: list[Tree]


class Nested(BaseModel):
    home: Address
    pet: Cat | Dog = Field(discriminator="kind")
    tree: Tree


def test_nested_schemas_move_to_components_and_stay_valid(validator: Validator) -> None:
    nested = declare(
        request=Nested,
        reply=Forest,
        unit="zoo",
        owner="team-zoo",
        capability="zoo.adopt",
        version="2.1.0",
        sla=Sla(p99_ms=10, availability=0.9),
        pricing=Pricing(price_per_call=Decimal("1"), cost_per_call=Decimal("0.5")),
    ).as_contract()
    assert "$defs" in nested.request, "the test needs a schema with $defs"
    document = asyncapi_document("zoo", [nested])
    assert problems(validator, document) == []
    assert '"$defs":' not in json.dumps(document)
    for ref in refs(document):
        _walk(document, ref)
    schemas = document["components"]["schemas"]
    assert schemas["zoo.adopt.v2.request"]["properties"]["pet"]["discriminator"] == "kind"
    assert {"zoo.adopt.v2.request.Address", "zoo.adopt.v2.reply.Tree"} <= set(schemas)


def test_export_is_deterministic_and_removes_only_its_stale_files(tmp_path: Path) -> None:
    stale = tmp_path / "asyncapi" / "gone.yaml"
    stale_schema = tmp_path / "schemas" / "gone" / "old.v1.request.json"
    foreign = tmp_path / "NOTES.md"
    for path in (stale, stale_schema, foreign):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("old")
    first = {p: p.read_bytes() for p in export(tmp_path, CONTRACTS)}
    second = {p: p.read_bytes() for p in export(tmp_path, list(reversed(CONTRACTS)))}
    assert first == second
    assert not stale.exists()
    assert not stale_schema.parent.exists()
    assert foreign.read_text() == "old"
    shipping = tmp_path / "schemas" / "fastship" / "shipping.book.v1.request.json"
    assert json.loads(shipping.read_text())["properties"].keys() == (
        next(c for c in CONTRACTS if c.unit == "fastship").request["properties"].keys()
    )


def owned_files(directory: Path) -> dict[str, bytes]:
    found = [
        *directory.glob("asyncapi/*.yaml"),
        *directory.glob("schemas/*/*.json"),
        *directory.glob("contract.schema.json"),
    ]
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in found}


def test_published_contracts_match_the_contracts(tmp_path: Path) -> None:
    written = export(tmp_path, CONTRACTS)
    expected, published = owned_files(tmp_path), owned_files(PUBLISHED)
    assert len(written) == len(expected)
    missing = sorted(expected.keys() - published.keys())
    extra = sorted(published.keys() - expected.keys())
    changed = sorted(k for k in expected.keys() & published.keys() if expected[k] != published[k])
    assert (missing, extra, changed) == ([], [], []), (
        f"contracts/published is out of date (missing {missing}, stale {extra}, "
        f"changed {changed}): {REGENERATE}"
    )
