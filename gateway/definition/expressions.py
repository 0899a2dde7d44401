"""The expression language of journey definitions: references (`$input.x`,
`$steps.<id>.<field>`, `$self.<field>`) and conditions (`$steps.fraud.decision == "allow"`)."""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import BaseModel

REF = re.compile(r"^\$(input|steps|self)\.([A-Za-z0-9_.-]+)$")
CONDITION = re.compile(r"^\s*(\$[A-Za-z0-9_.-]+)\s*(==|!=|<=|>=|<|>|not in|in)\s*(.+?)\s*$")


def parse_ref(value: Any) -> tuple[str, list[str]] | None:
    """`$steps.quote.total` -> ("steps", ["quote", "total"]); literals -> None."""
    if not isinstance(value, str):
        return None
    match = REF.match(value)
    return (match.group(1), match.group(2).split(".")) if match else None


class Condition(BaseModel):
    """`$steps.fraud.decision == "allow"`: a reference, an operator and a literal."""

    ref: str
    op: str
    value: Any

    @classmethod
    def parse(cls, text: str) -> Condition:
        match = CONDITION.match(text)
        if match is None or parse_ref(match.group(1)) is None:
            raise ValueError(f"condition {text!r} must look like '$steps.x.field == value'")
        return cls(ref=match.group(1), op=match.group(2), value=yaml.safe_load(match.group(3)))
