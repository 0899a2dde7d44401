"""FastShip's partner unit: next-day in DE/AT/CH, its own models honour its JSON contract."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from contracts import partner_contracts
from mbs import BusinessError, UnitStore
from mbs.testing import shadow_request
from services.partners.fastship import app
from services.partners.fastship.handlers import FastShipDepot
from services.partners.fastship.models import Booking, BookingRequest, Cancellation, CancelRequest

PACKAGE = Path(app.__file__).parent
OWN_MODELS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "shipping.book": (BookingRequest, Booking),
    "shipping.cancel": (CancelRequest, Cancellation),
}


def new_depot(first_tracking: int | None = None) -> FastShipDepot:
    store = UnitStore.temporary()
    return FastShipDepot(store) if first_tracking is None else FastShipDepot(store, first_tracking)


def parcel(country: str = "DE") -> BookingRequest:
    return BookingRequest(
        order_id="A-1", sku="grinder-c40", quantity=1, postcode="8001", country=country
    )


@pytest.mark.parametrize("country", ["DE", "AT", "CH"])
async def test_books_next_day_with_fs_tracking_in_dach(country: str) -> None:
    booking = await new_depot().book(parcel(country))
    assert (booking.carrier, booking.eta_days) == ("FastShip", 1)
    assert re.fullmatch(r"FS-\d{8}", booking.tracking_number)


async def test_tracking_numbers_follow_the_counter() -> None:
    depot = new_depot(first_tracking=7)
    numbers = [(await depot.book(parcel())).tracking_number for _ in range(2)]
    assert numbers == ["FS-00000007", "FS-00000008"]


@pytest.mark.parametrize("country", ["FR", "US"])
async def test_outside_dach_is_unserviceable(country: str) -> None:
    with pytest.raises(BusinessError) as err:
        await new_depot().book(parcel(country))
    assert err.value.code == "address_unserviceable"
    assert app.BOOK.declares(err.value.code)


async def test_cancel_is_idempotent_and_unknown_shipments_refused() -> None:
    depot = new_depot()
    booking = await depot.book(parcel())
    cancel = CancelRequest(shipment_id=booking.shipment_id)
    assert (await depot.cancel(cancel)).cancelled
    assert (await depot.cancel(cancel)).cancelled
    with pytest.raises(BusinessError) as err:
        await depot.cancel(CancelRequest(shipment_id="fs-nope"))
    assert err.value.code == "unknown_shipment"
    assert app.CANCEL.declares(err.value.code)


async def test_dry_run_books_and_cancels_nothing() -> None:
    depot = new_depot()
    real = await depot.book(parcel())
    with shadow_request():
        shadow = await depot.book(parcel())
        await depot.cancel(CancelRequest(shipment_id=real.shipment_id))
    assert shadow.shipment_id.startswith("dry-fs-")
    assert depot.bookings.keys() == [real.shipment_id]
    assert depot.cancellations.values() == []


@pytest.mark.parametrize("capability", sorted(OWN_MODELS))
def test_own_models_honour_the_json_contract(capability: str) -> None:
    (declared,) = [c for c in partner_contracts("fastship") if c.capability == capability]
    request, reply = OWN_MODELS[capability]
    assert _shape(request.model_json_schema()) == _shape(declared.request)
    assert _shape(reply.model_json_schema()) == _shape(declared.reply)


def test_unit_serves_its_json_contracts_with_its_own_models() -> None:
    unit = app.build()
    served = {
        b.contract.capability: (b.contract.request_model, b.contract.reply_model)
        for b in unit.bindings
    }
    assert unit.name == "fastship"
    assert served == OWN_MODELS
    assert [b.contract.as_contract() for b in unit.bindings] == list(partner_contracts("fastship"))


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
