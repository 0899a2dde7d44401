"""The compatibility gate: which schema and contract changes a mode lets through."""

from __future__ import annotations

import copy
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict

from contracts.pricing import QUOTE
from mbs import Contract
from mbs.contract import Incompatibility, can_read, check_contract, check_schema

Schema = dict[str, Any]
STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}


def obj(required: tuple[str, ...] = (), *, closed: bool = True, **props: Schema) -> Schema:
    """A small object schema; `closed` mirrors pydantic's extra="forbid"."""
    schema: Schema = {"type": "object", "properties": props, "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}], "default": None}


def kinds(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


# Pydantic models, as units write them: closed v1/v2, an open v1, nested lists of Literals.
class ClosedV1(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str


class ClosedV2(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str
    gift_wrap: bool = False


class OpenV1(BaseModel):
    model_config = ConfigDict(extra="allow")
    sku: str


class LineV1(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["goods", "service", "fee"]
    amount: int


class LineV2(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["goods", "service"]
    amount: float


class BillV1(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lines: list[LineV1]
    memo: str | None = None


class BillV2(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lines: list[LineV2]
    memo: str | None = None


class WidenedLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["goods", "service", "fee"]
    amount: float


class WidenedBill(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lines: list[WidenedLine]
    memo: str | None = None


class StrictMemoBill(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lines: list[LineV1]
    memo: str


ADDRESS_V1 = obj(("zip",), zip=STRING)
ADDRESS_V2 = obj(("zip",), zip=INTEGER)
WITH_DEFS_V1 = {"$defs": {"Address": ADDRESS_V1}, **obj(address={"$ref": "#/$defs/Address"})}
WITH_DEFS_V2 = {"$defs": {"Address": ADDRESS_V2}, **obj(address={"$ref": "#/$defs/Address"})}

OK = None
# (id, old, new, mode, expected): OK, or (substring of the reason, JSON path)
CASES: list[tuple[str, Schema, Schema, str, tuple[str, str] | None]] = [
    ("optional added, closed old writer, closed new reader",
     obj(a=STRING), obj(a=STRING, note=STRING), "BACKWARD", OK),
    ("optional added, closed old writer, open new reader",
     obj(a=STRING), obj(a=STRING, note=STRING, closed=False), "BACKWARD", OK),
    ("optional added, open old writer may already send it",
     obj(a=STRING, closed=False), obj(a=STRING, note=STRING, closed=False), "BACKWARD",
     ("writer's content model is open", "$.properties.note")),
    ("unconstrained optional added to open writer",
     obj(closed=False), obj(note={}, closed=False), "BACKWARD", OK),
    ("required field added",
     obj(a=STRING), obj(("postcode",), a=STRING, postcode=STRING), "BACKWARD",
     ("required field 'postcode' added", "$.properties.postcode")),
    ("required field removed, open reader",
     obj(("a", "b"), a=STRING, b=STRING), obj(("a",), a=STRING, closed=False), "BACKWARD", OK),
    ("required field removed, closed reader",
     obj(("a", "b"), a=STRING, b=STRING), obj(("a",), a=STRING), "BACKWARD",
     ("'b' is not in the reader's closed content model", "$.properties.b")),
    ("field added, old closed reader under FORWARD",
     obj(a=STRING), obj(a=STRING, note=STRING), "FORWARD",
     ("closed content model", "$.properties.note")),
    ("open writer, closed reader",
     obj(a=STRING, closed=False), obj(a=STRING), "BACKWARD",
     ("writer's content model is open, reader's is closed", "$.additionalProperties")),
    ("type change string -> integer",
     obj(q=STRING), obj(q=INTEGER), "BACKWARD", ("type changed", "$.properties.q")),
    ("integer -> number widening", obj(q=INTEGER), obj(q=NUMBER), "BACKWARD", OK),
    ("number -> integer narrowing",
     obj(q=NUMBER), obj(q=INTEGER), "BACKWARD",
     ("type changed from 'number' to 'integer'", "$.properties.q")),
    ("integer -> number under FORWARD",
     obj(q=INTEGER), obj(q=NUMBER), "FORWARD", ("writer's 'number' values", "$.properties.q")),
    ("enum narrowed, BACKWARD",
     obj(k=kinds("a", "b")), obj(k=kinds("a")), "BACKWARD", ("enum narrowed", "$.properties.k")),
    ("enum widened, BACKWARD", obj(k=kinds("a")), obj(k=kinds("a", "b")), "BACKWARD", OK),
    ("enum widened, FORWARD",
     obj(k=kinds("a")), obj(k=kinds("a", "b")), "FORWARD", ("['b']", "$.properties.k")),
    ("enum narrowed, FORWARD", obj(k=kinds("a", "b")), obj(k=kinds("a")), "FORWARD", OK),
    ("enum added to free string",
     obj(k=STRING), obj(k=kinds("a")), "BACKWARD", ("enum narrowed", "$.properties.k")),
    ("const changed",
     obj(v={"const": 1}), obj(v={"const": 2}), "BACKWARD", ("const changed", "$.properties.v")),
    ("nested object field type change",
     obj(address=ADDRESS_V1), obj(address=ADDRESS_V2), "BACKWARD",
     ("type changed", "$.properties.address.properties.zip")),
    ("nested change behind $ref",
     WITH_DEFS_V1, WITH_DEFS_V2, "BACKWARD",
     ("type changed", "$.properties.address.properties.zip")),
    ("array item type change",
     obj(tags={"type": "array", "items": STRING}), obj(tags={"type": "array", "items": INTEGER}),
     "BACKWARD", ("type changed", "$.properties.tags.items")),
    ("maxItems tightened",
     obj(tags={"type": "array", "items": STRING}),
     obj(tags={"type": "array", "items": STRING, "maxItems": 3}),
     "BACKWARD", ("maxItems tightened from unbounded to 3", "$.properties.tags")),
    ("maxLength tightened",
     obj(s={"type": "string", "maxLength": 64}), obj(s={"type": "string", "maxLength": 32}),
     "BACKWARD", ("maxLength tightened from 64 to 32", "$.properties.s")),
    ("maxLength loosened",
     obj(s={"type": "string", "maxLength": 32}), obj(s={"type": "string", "maxLength": 64}),
     "BACKWARD", OK),
    ("minLength tightened",
     obj(s=STRING), obj(s={"type": "string", "minLength": 1}),
     "BACKWARD", ("minLength tightened from 0 to 1", "$.properties.s")),
    ("pattern added",
     obj(s=STRING), obj(s={"type": "string", "pattern": "^[A-Z]{3}$"}),
     "BACKWARD", ("pattern added to", "$.properties.s")),
    ("format changed",
     obj(s={"type": "string", "format": "date"}), obj(s={"type": "string", "format": "email"}),
     "BACKWARD", ("format changed from 'date' to 'email'", "$.properties.s")),
    ("minimum tightened",
     obj(q={"type": "integer", "minimum": 1}), obj(q={"type": "integer", "minimum": 5}),
     "BACKWARD", ("minimum tightened from >= 1 to >= 5", "$.properties.q")),
    ("maximum made exclusive",
     obj(q={"type": "number", "maximum": 10}), obj(q={"type": "number", "exclusiveMaximum": 10}),
     "BACKWARD", ("maximum tightened from <= 10 to < 10", "$.properties.q")),
    ("numeric bounds loosened",
     obj(q={"type": "integer", "minimum": 1, "maximum": 10}),
     obj(q={"type": "integer", "minimum": 0}), "BACKWARD", OK),
    ("nullable removed",
     obj(m=nullable(STRING)), obj(m=STRING), "BACKWARD", ("nullable removed", "$.properties.m")),
    ("nullable added", obj(m=STRING), obj(m=nullable(STRING)), "BACKWARD", OK),
    ("nullable branch tightened",
     obj(m=nullable({"type": "string", "maxLength": 9})),
     obj(m=nullable({"type": "string", "maxLength": 5})),
     "BACKWARD", ("maxLength tightened from 9 to 5", "$.properties.m")),
    ("FULL catches the backward break",
     obj(a=STRING), obj(("b",), a=STRING, b=STRING), "FULL",
     ("required field 'b' added", "$.properties.b")),
    ("FULL catches the forward break",
     obj(k=kinds("a")), obj(k=kinds("a", "b")), "FULL", ("enum narrowed", "$.properties.k")),
    ("NONE accepts everything", obj(q=STRING), {"type": "integer"}, "NONE", OK),
    ("pydantic: optional field with default added to closed model",
     ClosedV1.model_json_schema(), ClosedV2.model_json_schema(), "BACKWARD", OK),
    ("pydantic: same change to an extra='allow' model",
     OpenV1.model_json_schema(), ClosedV2.model_json_schema(), "BACKWARD",
     ("writer's content model is open, reader's is closed", "$.additionalProperties")),
    ("pydantic: same change, FORWARD into the closed old model",
     ClosedV1.model_json_schema(), ClosedV2.model_json_schema(), "FORWARD",
     ("closed content model", "$.properties.gift_wrap")),
    ("pydantic: Literal narrowed inside a list of nested models",
     BillV1.model_json_schema(), BillV2.model_json_schema(), "BACKWARD",
     ("enum narrowed", "$.properties.lines.items.properties.kind")),
    ("pydantic: int -> float and Literal widened inside nested models",
     BillV1.model_json_schema(), WidenedBill.model_json_schema(), "BACKWARD", OK),
    ("pydantic: Optional made required",
     BillV1.model_json_schema(), StrictMemoBill.model_json_schema(), "BACKWARD",
     ("required field 'memo' added", "$.properties.memo")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "mode", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_check_schema(
    old: Schema, new: Schema, mode: str, expected: tuple[str, str] | None
) -> None:
    issues = check_schema(old, new, mode, "$")
    if expected is None:
        assert issues == []
        return
    substring, path = expected
    assert any(substring in i.reason and i.path == path for i in issues), issues


def test_full_reports_each_reason_once() -> None:
    issues = check_schema(obj(q=STRING), obj(q=INTEGER), "FULL", "$")
    assert len(issues) == len(set(issues)) == 2


def test_recursive_refs_terminate() -> None:
    tree = {
        "$defs": {"Node": obj(children={"type": "array", "items": {"$ref": "#/$defs/Node"}})},
        "$ref": "#/$defs/Node",
    }
    assert can_read(tree, copy.deepcopy(tree)) == []


def test_unresolvable_ref_says_what_is_supported() -> None:
    with pytest.raises(ValueError, match="only '#/\\$defs/Name' is supported"):
        can_read(obj(a={"$ref": "other.json#/A"}), obj(a=STRING))


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="use BACKWARD, FORWARD, FULL or NONE"):
        check_schema(obj(), obj(), "TRANSITIVE", "$")


# Contracts: the real pricing.quote contract, pinned at 1.0.0 so the version cases read plainly,
# and changed copies of it.
BASE = QUOTE.as_contract().model_copy(update={"version": "1.0.0"})


def changed(version: str = "1.1.0", request: Schema | None = None, **update: Any) -> Contract:
    new_request = request if request is not None else copy.deepcopy(BASE.request)
    return BASE.model_copy(update={"version": version, "request": new_request, **update})


def with_field(name: str, schema: Schema, *, required: bool) -> Schema:
    request = copy.deepcopy(BASE.request)
    request["properties"][name] = schema
    if required:
        request["required"].append(name)
    return request


def narrowed_quantity() -> Schema:
    request = copy.deepcopy(BASE.request)
    request["properties"]["quantity"]["maximum"] = 100
    return request


def reply_without_currency() -> Schema:
    reply = copy.deepcopy(BASE.reply)
    del reply["properties"]["currency"]
    reply["required"].remove("currency")
    return reply


CONTRACT_CASES: list[tuple[str, Contract, tuple[str, str] | None]] = [
    ("minor with an optional field",
     changed(request=with_field("coupon", STRING, required=False)), OK),
    ("minor with a required field", changed(request=with_field("coupon", STRING, required=True)),
     ("required field 'coupon' added", "$.request.properties.coupon")),
    ("minor narrowing quantity", changed(request=narrowed_quantity()),
     ("maximum tightened from <= 10000 to <= 100", "$.request.properties.quantity")),
    ("reply field dropped, closed reader", changed(reply=reply_without_currency()),
     ("'currency' is not in the reader's closed content model", "$.reply.properties.currency")),
    ("FORWARD: new optional request field into the closed old model",
     changed(request=with_field("coupon", STRING, required=False), compatibility="FORWARD"),
     ("closed content model", "$.request.properties.coupon")),
    ("NONE accepts a breaking minor",
     changed(request=with_field("coupon", STRING, required=True), compatibility="NONE"), OK),
    ("major bump accepts a breaking change",
     changed("2.0.0", request=with_field("coupon", STRING, required=True)), OK),
    ("same version refused", changed("1.0.0"), ("version must increase", "$.version")),
    ("prerelease of the same version refused",
     changed("1.0.0-rc.1"), ("version must increase", "$.version")),
    ("capability mismatch refused",
     changed(capability="pricing.estimate"), ("capability changed", "$.capability")),
    ("owner unit changed", changed(unit="billing"), ("owner unit changed", "$.unit")),
    ("side effects and compensation changes are free",
     changed(side_effects=True, compensation="pricing.void"), OK),
]  # fmt: skip


@pytest.mark.parametrize(
    ("new", "expected"),
    [case[1:] for case in CONTRACT_CASES],
    ids=[case[0] for case in CONTRACT_CASES],
)
def test_check_contract(new: Contract, expected: tuple[str, str] | None) -> None:
    issues = check_contract(BASE, new)
    if expected is None:
        assert issues == []
        return
    substring, path = expected
    assert any(substring in i.reason and i.path == path for i in issues), issues


def test_lower_minor_is_refused() -> None:
    issues = check_contract(changed("1.2.0"), changed("1.1.3"))
    assert issues == [
        Incompatibility("$.version", "version must increase: 1.1.3 is not greater than 1.2.0")
    ]


def test_release_after_its_prerelease_is_accepted() -> None:
    assert check_contract(changed("1.1.0-rc.1"), changed("1.1.0")) == []


def test_incompatibility_is_a_value() -> None:
    assert Incompatibility("$.a", "x") == Incompatibility("$.a", "x")
