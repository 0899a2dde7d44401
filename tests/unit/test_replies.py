"""Replies are checked against the provider's contract before the engine trusts them."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from contracts.payments import CHARGE
from gateway.replies import Checked, check
from mbs import wire as h
from mbs.kafka import Reply

GOOD = {
    "charge_id": "ch-1",
    "order_id": "o-1",
    "amount": "12.50",
    "currency": "EUR",
    "provider": "payments",
}


def _reply(body: object, **headers: str) -> Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    base = {h.PRICE: "0.030000", h.COST: "0.015000"}
    return Reply(body=raw, headers={**base, **headers}, latency_ms=1.0)


def test_a_reply_in_the_contracts_terms_is_trusted_and_billed_at_the_contract_price() -> None:
    checked = check(CHARGE, _reply(GOOD))
    assert checked == Checked(GOOD, Decimal("0.015000"), CHARGE.pricing.price_per_call)


@pytest.mark.parametrize(
    ("body", "headers", "problem"),
    [
        (b"<html>oops</html>", {}, "not JSON"),
        ([1, 2, 3], {}, "breaks the contract at <root>"),
        ({"unexpected": True}, {}, "breaks the contract"),
        ({**GOOD, "amount": 12.5}, {}, "breaks the contract at amount"),
        (GOOD, {h.PRICE: "abc"}, "mbs-price 'abc' is not a decimal"),
        (GOOD, {h.COST: "-1"}, "mbs-cost '-1' is not a decimal of 0 or more"),
        (GOOD, {h.COST: "NaN"}, "mbs-cost 'NaN'"),
    ],
)
def test_a_reply_that_breaks_the_contract_says_what_is_wrong(
    body: object, headers: dict[str, str], problem: str
) -> None:
    found = check(CHARGE, _reply(body, **headers))
    assert isinstance(found, str)
    assert problem in found


def test_a_price_header_above_the_contract_is_flagged_and_not_billed() -> None:
    checked = check(CHARGE, _reply(GOOD, **{h.PRICE: "999999"}))
    assert isinstance(checked, Checked)
    assert checked.price == CHARGE.pricing.price_per_call
    assert "999999 differs from the contract's" in checked.note


def test_an_error_reply_is_billed_nothing() -> None:
    checked = check(CHARGE, _reply({}, **{h.ERROR: "card_declined"}))
    assert isinstance(checked, Checked)
    assert checked.price == 0


def test_an_error_code_the_contract_does_not_declare_breaks_it() -> None:
    """An undeclared code would otherwise read as a business error, "not done", while the
    provider may have done it."""
    declared = CHARGE.errors[0].code
    assert isinstance(check(CHARGE, _reply(b"", **{h.ERROR: declared})), Checked)
    refused = check(CHARGE, _reply(b"", **{h.ERROR: "made_up"}))
    assert isinstance(refused, str)
    assert "'made_up' is not declared" in refused
    for code in h.PLATFORM_ERRORS:
        assert isinstance(check(CHARGE, _reply(b"", **{h.ERROR: code})), Checked), code


@pytest.mark.parametrize(("given", "kept"), [("abc", None), ("-3", None), ("12.5", 12.5)])
def test_a_handler_time_that_is_no_number_is_dropped_not_fatal(
    given: str, kept: float | None
) -> None:
    checked = check(CHARGE, _reply(GOOD, **{h.HANDLER_MS: given}))
    assert isinstance(checked, Checked)
    assert checked.handler_ms == kept
