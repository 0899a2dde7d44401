"""The shipping unit with DHL: tracking numbers, unserviceable postcodes, idempotent cancel."""

from __future__ import annotations

import re

import pytest

from contracts.shipping import BOOK, CANCEL, BookingRequest, CancelRequest
from mbs import BusinessError, UnitStore
from mbs.testing import shadow_request
from services.shipping.handlers import ShipmentBook


def new_book(first_tracking: int | None = None) -> ShipmentBook:
    store = UnitStore.temporary()
    return ShipmentBook(store) if first_tracking is None else ShipmentBook(store, first_tracking)


def parcel(postcode: str = "10115", country: str = "DE") -> BookingRequest:
    return BookingRequest(
        order_id="A-1", sku="grinder-c40", quantity=1, postcode=postcode, country=country
    )


async def test_booking_gets_dhl_and_sequential_mbs_tracking_numbers() -> None:
    book = new_book(first_tracking=41)
    first = await book.book(parcel())
    second = await book.book(parcel())
    assert first.carrier == "DHL"
    assert re.fullmatch(r"MBS\d{10}", first.tracking_number)
    assert (first.tracking_number, second.tracking_number) == ("MBS0000000041", "MBS0000000042")
    assert first.shipment_id != second.shipment_id


async def test_eta_is_two_days_at_home_four_abroad() -> None:
    book = new_book()
    assert (await book.book(parcel())).eta_days == 2
    assert (await book.book(parcel(postcode="1010", country="AT"))).eta_days == 4


async def test_postcode_starting_99_is_unserviceable() -> None:
    book = new_book()
    with pytest.raises(BusinessError) as err:
        await book.book(parcel(postcode="99084"))
    assert err.value.code == "address_unserviceable"
    assert BOOK.declares(err.value.code)
    assert book.bookings.values() == []


async def test_cancel_twice_is_cancelled_both_times() -> None:
    book = new_book()
    booking = await book.book(parcel())
    cancel = CancelRequest(shipment_id=booking.shipment_id)
    assert (await book.cancel(cancel)).cancelled
    assert (await book.cancel(cancel)).cancelled
    assert book.cancellations.keys() == [booking.shipment_id]


async def test_cancel_of_an_unknown_shipment_is_refused() -> None:
    with pytest.raises(BusinessError) as err:
        await new_book().cancel(CancelRequest(shipment_id="shp-nope"))
    assert err.value.code == "unknown_shipment"
    assert CANCEL.declares(err.value.code)


async def test_dry_run_books_and_cancels_nothing() -> None:
    book = new_book()
    real = await book.book(parcel())
    with shadow_request():
        shadow = await book.book(parcel())
        await book.cancel(CancelRequest(shipment_id=real.shipment_id))
    assert shadow.shipment_id.startswith("dry-shp-")
    assert re.fullmatch(r"MBS\d{10}", shadow.tracking_number)
    assert book.bookings.keys() == [real.shipment_id]
    assert book.cancellations.values() == []
    assert (await book.book(parcel())).tracking_number == shadow.tracking_number
