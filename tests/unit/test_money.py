"""The money type: its JSON Schema and its pydantic model accept exactly the same values, and
every shipped contract carries money in it, never pydantic's "any number or any string"."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator, validators
from jsonschema import ValidationError as SchemaError
from pydantic import TypeAdapter, ValidationError

import contracts
from mbs import Contract
from mbs.contract import MONEY_PATTERN, POSITIVE_MONEY_PATTERN, Money, PositiveMoney

TYPES: dict[str, TypeAdapter[Decimal]] = {
    "Money": TypeAdapter(Money),
    "PositiveMoney": TypeAdapter(PositiveMoney),
}
PATTERNS = {"Money": MONEY_PATTERN, "PositiveMoney": POSITIVE_MONEY_PATTERN}
LARGEST = Decimal("9999999999.99")
CENT = Decimal("0.01")
PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None)
# Wire values near the edge of the rule: signs, exponents, spaces, too many digits, non-ASCII.
NEAR_MONEY = st.from_regex(r"\A[-+ ]?[0-9٣]{0,12}([.,][0-9]{0,4})?([eE][-+]?[0-9])?[ \n]?\Z")
JSON_VALUES = st.one_of(
    NEAR_MONEY,
    st.text(max_size=14),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)


# `$` not preceded by a backslash: the end-of-text anchor.
_END = re.compile(r"(?<!\\)\$")


def _ecma_pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[SchemaError]:
    """JSON Schema regexes are ECMA-262, where `$` is the end of the text; Python's `$` (which
    jsonschema uses as is) also matches before a final newline, which no partner's would."""
    ecma = _END.sub(r"\\Z", pattern)
    if validator.is_type(instance, "string") and not re.search(ecma, instance):
        yield SchemaError(f"{instance!r} does not match {pattern!r}")


EcmaValidator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


def schema_of(name: str) -> dict[str, Any]:
    return TYPES[name].json_schema()


def accepts(name: str, value: Any) -> bool:
    """Does the unit take this JSON value? As the kit parses it: JSON text, then the model."""
    try:
        TYPES[name].validate_json(json.dumps(value))
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(TYPES))
def test_the_schema_is_a_string_with_the_pattern(name: str) -> None:
    schema = schema_of(name)
    Draft202012Validator.check_schema(schema)
    assert (schema["type"], schema["pattern"]) == ("string", PATTERNS[name])
    assert "anyOf" not in schema


@pytest.mark.parametrize("name", sorted(TYPES))
def test_every_value_the_schema_generates_is_accepted(name: str) -> None:
    @PROPERTY
    @given(from_schema(schema_of(name)))
    def check(value: Any) -> None:
        assert accepts(name, value), value
        assert TYPES[name].validate_python(json.loads(json.dumps(value))) == Decimal(value)

    check()


@pytest.mark.parametrize("name", sorted(TYPES))
def test_model_and_schema_agree_on_any_json_value(name: str) -> None:
    validator = EcmaValidator(schema_of(name))

    @PROPERTY
    @given(JSON_VALUES)
    def check(value: Any) -> None:
        assert accepts(name, value) == validator.is_valid(value), value

    check()


@pytest.mark.parametrize("name", sorted(TYPES))
def test_valid_model_values_dump_to_schema_valid_json(name: str) -> None:
    validator = Draft202012Validator(schema_of(name))
    low = CENT if name == "PositiveMoney" else Decimal(0)

    @PROPERTY
    @given(st.decimals(min_value=low, max_value=LARGEST, places=2))
    def check(amount: Decimal) -> None:
        dumped = json.loads(TYPES[name].dump_json(TYPES[name].validate_python(amount)))
        assert validator.is_valid(dumped), dumped
        assert Decimal(dumped) == amount

    check()


@pytest.mark.parametrize(
    ("value", "money", "positive"),
    [
        ("19.90", True, True),
        ("19.9", True, True),
        ("19", True, True),
        ("0.01", True, True),
        ("0.10", True, True),
        ("9999999999.99", True, True),
        ("0", True, False),
        ("0.00", True, False),
        ("", False, False),
        ("19.999", False, False),
        ("10000000000", False, False),
        ("-1.00", False, False),
        ("+1.00", False, False),
        ("01.00", False, False),
        ("1.", False, False),
        (".5", False, False),
        ("1e3", False, False),
        (" 1.00", False, False),
        ("1.00\n", False, False),
        ("١٢", False, False),
        (19.9, False, False),
        (19, False, False),
        (None, False, False),
    ],
)
def test_examples(value: Any, money: bool, positive: bool) -> None:
    assert (accepts("Money", value), accepts("PositiveMoney", value)) == (money, positive)


def test_amounts_leave_with_two_decimals() -> None:
    assert TYPES["Money"].dump_json(Decimal("19.9")) == b'"19.90"'
    assert TYPES["PositiveMoney"].dump_python(Decimal("5"), mode="json") == "5.00"
    assert TYPES["Money"].validate_python(Decimal("1E+1")) == Decimal("10")


def test_python_values_follow_the_same_rule() -> None:
    """Handlers build replies from Decimals: an over-precise one is refused, not rounded."""
    with pytest.raises(ValidationError, match="not money"):
        TYPES["Money"].validate_python(Decimal("23.655"))
    with pytest.raises(ValidationError, match="send it as a string"):
        TYPES["Money"].validate_python(23.65)


def _amount_schemas(schema: Any, path: str) -> list[tuple[str, Any]]:
    """Every sub-schema that admits both numbers and strings: pydantic's Decimal schema."""
    found: list[tuple[str, Any]] = []
    if isinstance(schema, dict):
        kinds = {branch.get("type") for branch in schema.get("anyOf", [])}
        if {"number", "string"} <= kinds:
            found.append((path, schema))
        for key, value in schema.items():
            found += _amount_schemas(value, f"{path}.{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            found += _amount_schemas(value, f"{path}[{index}]")
    return found


@pytest.mark.parametrize("contract", contracts.all_contracts(), ids=lambda c: c.key)
def test_shipped_contracts_carry_money_not_any_number_or_string(contract: Contract) -> None:
    loose = _amount_schemas(contract.request, "$.request")
    loose += _amount_schemas(contract.reply, "$.reply")
    assert not loose, f"{contract.key} ({contract.unit}): use mbs.contract.money for {loose}"
