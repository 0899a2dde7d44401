"""A reply is checked like a request before the engine trusts it: its body against the
provider's declared reply schema, its money headers as decimals. The price billed is the
contract's, never a header's (a unit cannot bill what its contract does not say)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from jsonschema import Draft202012Validator

from mbs import wire as h
from mbs.contract import Contract
from mbs.kafka import Reply

INVALID_REPLY = "invalid_reply"


@dataclass(frozen=True)
class Checked:
    """What a reply says, once it is known to say it in the contract's terms."""

    body: dict[str, Any]
    cost: Decimal
    price: Decimal
    note: str = ""


def check(contract: Contract, reply: Reply) -> Checked | str:
    """The checked reply, or what is wrong with it."""
    cost = _money(reply.headers.get(h.COST, "0"))
    if cost is None:
        return f"{h.COST} {reply.headers.get(h.COST)!r} is not a decimal of 0 or more"
    stated = _money(reply.headers.get(h.PRICE, "0"))
    if stated is None:
        return f"{h.PRICE} {reply.headers.get(h.PRICE)!r} is not a decimal of 0 or more"
    if reply.error is not None:
        return Checked({}, cost, Decimal(0))
    try:
        body = json.loads(reply.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"reply is not JSON: {exc}"
    problems = sorted(_validator(contract).iter_errors(body), key=str)
    if problems:
        where = "/".join(str(p) for p in problems[0].absolute_path) or "<root>"
        return f"reply breaks the contract at {where}: {problems[0].message[:200]}"
    price = contract.pricing.price_per_call
    note = "" if stated == price else f"{h.PRICE} {stated} differs from the contract's {price}"
    return Checked(body, cost, price, note)


def _money(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() and value >= 0 else None


_VALIDATORS: dict[tuple[str, str], Draft202012Validator] = {}


def _validator(contract: Contract) -> Draft202012Validator:
    """Built once per provider and version, not per reply (this is the hot path)."""
    key = (contract.key, contract.unit)
    found = _VALIDATORS.get(key)
    if found is None:
        found = _VALIDATORS[key] = Draft202012Validator(contract.reply)
    return found
