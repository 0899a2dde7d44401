"""The payments unit's card ledger: declines, limits, refunds once, dry runs keep nothing."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from contracts.payments import CHARGE, REFUND, ChargeRequest, RefundRequest
from mbs import BusinessError, UnitStore
from mbs.testing import shadow_request
from services.payments.handlers import CardLedger


def new_ledger() -> CardLedger:
    return CardLedger(UnitStore.temporary())


def charge_of(amount: str, card: str = "tok-4242") -> ChargeRequest:
    return ChargeRequest(
        order_id="A-1", customer_id="cust-1", amount=Decimal(amount), card_token=card
    )


async def test_charge_takes_the_amount_with_a_charge_id() -> None:
    ledger = new_ledger()
    charge = await ledger.charge(charge_of("49.90"))
    assert re.fullmatch(r"ch-[0-9a-f]{12}", charge.charge_id)
    assert (charge.amount, charge.currency, charge.provider) == (
        Decimal("49.90"),
        "EUR",
        "payments",
    )
    assert ledger.charges.items() == [(charge.charge_id, charge)]


async def test_card_ending_0000_is_declined() -> None:
    with pytest.raises(BusinessError) as err:
        await new_ledger().charge(charge_of("10.00", card="tok-0000"))
    assert err.value.code == "card_declined"
    assert CHARGE.declares(err.value.code)


async def test_charge_up_to_2000_passes_above_is_over_the_limit() -> None:
    ledger = new_ledger()
    await ledger.charge(charge_of("2000.00"))
    with pytest.raises(BusinessError) as err:
        await ledger.charge(charge_of("2000.01"))
    assert err.value.code == "limit_exceeded"
    assert CHARGE.declares(err.value.code)
    assert len(ledger.charges.values()) == 1


async def test_a_charge_is_refunded_once_and_asking_again_gets_the_same_refund() -> None:
    ledger = new_ledger()
    charge = await ledger.charge(charge_of("120.00"))
    refund = await ledger.refund(RefundRequest(charge_id=charge.charge_id))
    assert (refund.charge_id, refund.amount) == (charge.charge_id, Decimal("120.00"))
    again = await ledger.refund(RefundRequest(charge_id=charge.charge_id))
    assert again == refund, "an undo is idempotent: the same refund, no second one"
    assert ledger.refunds.values() == [refund]


async def test_refund_of_an_unknown_charge_is_refused() -> None:
    with pytest.raises(BusinessError) as err:
        await new_ledger().refund(RefundRequest(charge_id="ch-nope"))
    assert err.value.code == "unknown_charge"
    assert REFUND.declares(err.value.code)


async def test_dry_run_charges_and_refunds_record_nothing() -> None:
    ledger = new_ledger()
    real = await ledger.charge(charge_of("30.00"))
    with shadow_request():
        shadow = await ledger.charge(charge_of("30.00"))
        shadow_refund = await ledger.refund(RefundRequest(charge_id=real.charge_id))
    assert re.fullmatch(r"dry-ch-[0-9a-f]{12}", shadow.charge_id)
    assert shadow_refund.refund_id.startswith("dry-")
    assert ledger.charges.keys() == [real.charge_id]
    assert ledger.refunds.values() == []


async def test_dry_run_still_applies_the_rules() -> None:
    with shadow_request(), pytest.raises(BusinessError, match="card_declined"):
        await new_ledger().charge(charge_of("10.00", card="tok-0000"))
