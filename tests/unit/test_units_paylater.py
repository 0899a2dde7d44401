"""PayLater's partner unit: up to 5000 on credit, refunds once, its own models honour its JSON."""

from __future__ import annotations

import ast
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from contracts import partner_contracts
from mbs import BusinessError, UnitStore
from mbs.testing import shadow_request
from services.partners.paylater import app
from services.partners.paylater.handlers import PayLaterAccounts
from services.partners.paylater.models import Charge, ChargeRequest, Refund, RefundRequest

PACKAGE = Path(app.__file__).parent
OWN_MODELS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "payments.charge": (ChargeRequest, Charge),
    "payments.refund": (RefundRequest, Refund),
}


def new_accounts() -> PayLaterAccounts:
    return PayLaterAccounts(UnitStore.temporary())


def charge_of(amount: str, card: str = "tok-4242") -> ChargeRequest:
    return ChargeRequest(
        order_id="A-1", customer_id="cust-1", amount=Decimal(amount), card_token=card
    )


async def test_charges_up_to_5000_and_never_declines_a_card() -> None:
    accounts = new_accounts()
    charge = await accounts.charge(charge_of("5000.00", card="tok-0000"))
    assert re.fullmatch(r"pl-[0-9a-f]{12}", charge.charge_id)
    assert (charge.amount, charge.provider) == (Decimal("5000.00"), "paylater")
    assert accounts.charges.keys() == [charge.charge_id]


async def test_above_5000_is_over_the_limit() -> None:
    with pytest.raises(BusinessError) as err:
        await new_accounts().charge(charge_of("5000.01"))
    assert err.value.code == "limit_exceeded"
    assert app.CHARGE.declares(err.value.code)


async def test_a_charge_is_refunded_once_and_asking_again_gets_the_same_refund() -> None:
    accounts = new_accounts()
    charge = await accounts.charge(charge_of("800.00"))
    refund = await accounts.refund(RefundRequest(charge_id=charge.charge_id))
    assert (refund.charge_id, refund.amount) == (charge.charge_id, Decimal("800.00"))
    again = await accounts.refund(RefundRequest(charge_id=charge.charge_id))
    assert again == refund, "an undo is idempotent: the same refund, no second one"
    assert accounts.refunds.values() == [refund]


async def test_refund_of_an_unknown_charge_is_refused() -> None:
    with pytest.raises(BusinessError) as err:
        await new_accounts().refund(RefundRequest(charge_id="pl-nope"))
    assert err.value.code == "unknown_charge"
    assert app.REFUND.declares(err.value.code)


async def test_dry_run_charges_and_refunds_record_nothing() -> None:
    accounts = new_accounts()
    real = await accounts.charge(charge_of("30.00"))
    with shadow_request():
        shadow = await accounts.charge(charge_of("30.00"))
        await accounts.refund(RefundRequest(charge_id=real.charge_id))
    assert re.fullmatch(r"dry-pl-[0-9a-f]{12}", shadow.charge_id)
    assert accounts.charges.keys() == [real.charge_id]
    assert accounts.refunds.values() == []


@pytest.mark.parametrize("capability", sorted(OWN_MODELS))
def test_own_models_honour_the_json_contract(capability: str) -> None:
    (declared,) = [c for c in partner_contracts("paylater") if c.capability == capability]
    request, reply = OWN_MODELS[capability]
    assert _shape(request.model_json_schema()) == _shape(declared.request)
    assert _shape(reply.model_json_schema()) == _shape(declared.reply)


def test_unit_serves_its_json_contracts_with_its_own_models() -> None:
    unit = app.build()
    served = {
        b.contract.capability: (b.contract.request_model, b.contract.reply_model)
        for b in unit.bindings
    }
    assert unit.name == "paylater"
    assert served == OWN_MODELS
    assert [b.contract.as_contract() for b in unit.bindings] == list(partner_contracts("paylater"))


def test_imports_none_of_our_in_house_contract_modules() -> None:
    imported = {
        node.module
        for source in PACKAGE.glob("*.py")
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not [module for module in imported if module.startswith("contracts.")]


def _shape(schema: dict[str, Any]) -> tuple[Any, Any, Any]:
    """What a caller relies on: the fields, which are required, and no extra fields."""
    return schema["properties"], schema.get("required", []), schema.get("additionalProperties")
