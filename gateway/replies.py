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
# The replies a run keeps may take half of MBS_MAX_RECORD_BYTES, shared by its steps; each
# is kept twice at most (in its call, to undo it, and as the step's output).
REPLY_SHARE = 2


def reply_room(record_limit: int, steps: int) -> int:
    """Bytes one step's reply may take so that a run's record stays within the limit."""
    return record_limit // REPLY_SHARE // (2 * max(steps, 1))


@dataclass(frozen=True)
class Checked:
    """What a reply says, once it is known to say it in the contract's terms."""

    body: dict[str, Any]
    cost: Decimal
    price: Decimal
    note: str = ""
    handler_ms: float | None = None


def check(contract: Contract, reply: Reply, room: int | None = None) -> Checked | str:
    """The checked reply, or what is wrong with it; a body over `room` bytes is wrong too
    (the run could not be saved with it)."""
    money = _headers(reply)
    if isinstance(money, str):
        return money
    cost, stated = money
    handler_ms = _handler_ms(reply)
    if reply.error is not None:  # an answer without a body; only known codes are answers
        known = reply.error in h.PLATFORM_ERRORS or reply.error in _codes(contract)
        if known:
            return Checked({}, cost, Decimal(0), handler_ms=handler_ms)
        return f"error code {reply.error[:64]!r} is not declared by the contract"
    body = _body(contract, reply, room)
    if isinstance(body, str):
        return body
    price = contract.pricing.price_per_call
    note = "" if stated == price else f"{h.PRICE} {stated} differs from the contract's {price}"
    return Checked(body, cost, price, note, handler_ms)


def _body(contract: Contract, reply: Reply, room: int | None) -> dict[str, Any] | str:
    """The reply's body if it is the contract's reply document, or what is wrong with it."""
    if room is not None and len(reply.body) > room:
        return f"reply of {len(reply.body)} bytes is over the {room} one step may keep"
    try:
        body = json.loads(reply.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"reply is not JSON: {exc}"
    problems = sorted(_validator(contract).iter_errors(body), key=str)
    if problems:
        where = "/".join(str(p) for p in problems[0].absolute_path) or "<root>"
        return f"reply breaks the contract at {where}: {problems[0].message[:200]}"
    if not isinstance(body, dict):
        return "reply is not a JSON object"
    return body


def _codes(contract: Contract) -> set[str]:
    return {e.code for e in contract.errors}


def money(reply: Reply) -> tuple[Decimal, Decimal] | None:
    """Cost and stated price, if both are amounts (for telemetry before the check)."""
    found = _headers(reply)
    return None if isinstance(found, str) else found


def _handler_ms(reply: Reply) -> float | None:
    """The unit's own handler time; informational, so a bad value is dropped, not refused."""
    try:
        value = float(reply.headers.get(h.HANDLER_MS, ""))
    except ValueError:
        return None
    return value if 0 <= value < 1e9 else None


def _headers(reply: Reply) -> tuple[Decimal, Decimal] | str:
    """The reply's cost and stated price, or which of them is not an amount."""
    found = []
    for name in (h.COST, h.PRICE):
        value = _money(reply.headers.get(name, "0"))
        if value is None:
            return f"{name} {reply.headers.get(name)!r} is not a decimal of 0 or more"
        found.append(value)
    return found[0], found[1]


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
