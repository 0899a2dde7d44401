"""Money on the wire: a decimal string such as "19.90", and a schema that says exactly that.

A JSON number is a binary float to most parsers (JavaScript, jq, many Java mappers): a
partner's 0.1 + 0.2 goes out as 0.30000000000000004; a string is exact in every language.
The pattern is the whole rule, so a partner's validator, the conformance kit and the unit
accept the same values: at most 10 digits before the point, at most 2 after, no sign,
exponent or spaces.
Values leave a unit with exactly two decimals ("19.9" in, "19.90" out): one spelling per
amount, so replies compare equal across providers.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

__all__ = [
    "MONEY_PATTERN",
    "POSITIVE_MONEY_PATTERN",
    "Money",
    "PositiveMoney",
    "money_schema",
]

MAX_WHOLE_DIGITS = 10
MAX_DECIMAL_PLACES = 2
# [0-9], not \d: Python's \d also matches other scripts' digits, which JSON Schema's does not.
_WHOLE = rf"(0|[1-9][0-9]{{0,{MAX_WHOLE_DIGITS - 1}}})"
_FRACTION = rf"(\.[0-9]{{1,{MAX_DECIMAL_PLACES}}})?"
MONEY_PATTERN = rf"^{_WHOLE}{_FRACTION}$"
# Greater than zero: 0.01 to 0.99, or a whole part of 1 or more.
POSITIVE_MONEY_PATTERN = (
    rf"^(0\.(0[1-9]|[1-9][0-9]?)|[1-9][0-9]{{0,{MAX_WHOLE_DIGITS - 1}}}{_FRACTION})$"
)
_EXAMPLE = "19.90"
_SHAPE = (
    f"a decimal string with at most {MAX_WHOLE_DIGITS} digits before the point and "
    f'at most {MAX_DECIMAL_PLACES} after, such as "{_EXAMPLE}"'
)


def money_schema(pattern: str, meaning: str) -> dict[str, Any]:
    """The JSON Schema of an amount: a string and its pattern, nothing a reader must guess."""
    return {
        "type": "string",
        "pattern": pattern,
        "description": f"Money, {meaning}: {_SHAPE} (a JSON number is refused: not exact).",
        "examples": [_EXAMPLE],
    }


def _text(value: object) -> str:
    """The amount as written: JSON gives a string; Python code may hand over a Decimal."""
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    kind = type(value).__name__
    raise ValueError(f"money must be {_SHAPE}; got {kind} {value!r}: send it as a string")


def _parser(pattern: str, meaning: str) -> PlainValidator:
    """Accept exactly the strings the schema's pattern accepts; fullmatch, since Python's `$`
    would also let a trailing newline through."""
    rule = re.compile(pattern)

    def parse(value: object) -> Decimal:
        text = _text(value)
        if rule.fullmatch(text) is None:
            raise ValueError(f"{text!r} is not money {meaning}: expected {_SHAPE}")
        return Decimal(text)

    return PlainValidator(parse, json_schema_input_type=str)


def _dump(value: Decimal) -> str:
    return f"{value:.{MAX_DECIMAL_PLACES}f}"


_AS_STRING = PlainSerializer(_dump, return_type=str, when_used="json")

Money = Annotated[
    Decimal,
    _parser(MONEY_PATTERN, "of 0 or more"),
    _AS_STRING,
    WithJsonSchema(money_schema(MONEY_PATTERN, "0 or more")),
]
"""An amount of 0 or more (a price, a total, an order value)."""

PositiveMoney = Annotated[
    Decimal,
    _parser(POSITIVE_MONEY_PATTERN, "greater than 0"),
    _AS_STRING,
    WithJsonSchema(money_schema(POSITIVE_MONEY_PATTERN, "greater than 0")),
]
"""An amount greater than 0 (a charge, a refund)."""
