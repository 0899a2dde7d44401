"""Wires FastShip's unit: its JSON contracts bound to its own models and depot."""

from __future__ import annotations

from contracts import partner_contracts
from mbs import Binding, Contract, Unit, UnitStore, implement
from services.partners.fastship.handlers import FastShipDepot
from services.partners.fastship.models import Booking, BookingRequest, Cancellation, CancelRequest

COMPANY = "fastship"


def _contract(capability: str) -> Contract:
    for contract in partner_contracts(COMPANY):
        if contract.capability == capability:
            return contract
    raise LookupError(f"contracts/partners/{COMPANY}.json declares no {capability!r}")


BOOK = implement(_contract("shipping.book"), request=BookingRequest, reply=Booking)
CANCEL = implement(_contract("shipping.cancel"), request=CancelRequest, reply=Cancellation)


def build(store: UnitStore | None = None) -> Unit:
    state = store or UnitStore.temporary()
    parcels = FastShipDepot(state)
    bindings = [Binding(BOOK, parcels.book), Binding(CANCEL, parcels.cancel)]
    return Unit(COMPANY, bindings, store=state)
