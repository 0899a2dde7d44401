"""Wires PayLater's unit: its JSON contracts bound to its own models and accounts."""

from __future__ import annotations

from contracts import partner_contracts
from mbs import Binding, Contract, Unit, UnitStore, implement
from services.partners.paylater.handlers import PayLaterAccounts
from services.partners.paylater.models import Charge, ChargeRequest, Refund, RefundRequest

COMPANY = "paylater"


def _contract(capability: str) -> Contract:
    for contract in partner_contracts(COMPANY):
        if contract.capability == capability:
            return contract
    raise LookupError(f"contracts/partners/{COMPANY}.json declares no {capability!r}")


CHARGE = implement(_contract("payments.charge"), request=ChargeRequest, reply=Charge)
REFUND = implement(_contract("payments.refund"), request=RefundRequest, reply=Refund)


def build(store: UnitStore | None = None) -> Unit:
    state = store or UnitStore.temporary()
    book = PayLaterAccounts(state)
    bindings = [Binding(CHARGE, book.charge), Binding(REFUND, book.refund)]
    return Unit(COMPANY, bindings, store=state)
