"""In-house shipping with DHL: bookings get tracking numbers, cancelling twice is harmless."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from contracts.shipping import Booking, BookingRequest, Cancellation, CancelRequest
from mbs.errors import BusinessError
from mbs.unit import dry_run

CARRIER = "DHL"
UNSERVICEABLE_POSTCODE_PREFIX = "99"
DOMESTIC_COUNTRY = "DE"
DOMESTIC_ETA_DAYS = 2
ABROAD_ETA_DAYS = 4
FIRST_TRACKING_NUMBER = 4_711_000_001


def _new_shipment_id() -> str:
    real = f"shp-{uuid.uuid4().hex[:12]}"
    return f"dry-{real}" if dry_run() else real


@dataclass
class ShipmentBook:
    """The parcels booked with the carrier, the cancelled ones, and the next tracking number."""

    bookings: dict[str, Booking] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    next_tracking: int = FIRST_TRACKING_NUMBER

    async def book(self, request: BookingRequest) -> Booking:
        if request.postcode.startswith(UNSERVICEABLE_POSTCODE_PREFIX):
            raise BusinessError(
                "address_unserviceable",
                f"{CARRIER} does not deliver to postcode {request.postcode}; "
                "ship with another carrier",
            )
        booking = Booking(
            shipment_id=_new_shipment_id(),
            order_id=request.order_id,
            carrier=CARRIER,
            tracking_number=f"MBS{self.next_tracking:010d}",
            eta_days=DOMESTIC_ETA_DAYS if request.country == DOMESTIC_COUNTRY else ABROAD_ETA_DAYS,
        )
        if not dry_run():
            self.bookings[booking.shipment_id] = booking
            self.next_tracking += 1
        return booking

    async def cancel(self, request: CancelRequest) -> Cancellation:
        if request.shipment_id not in self.bookings:
            raise BusinessError(
                "unknown_shipment", f"no shipment {request.shipment_id!r} was booked here"
            )
        if not dry_run():
            self.cancelled.add(request.shipment_id)
        return Cancellation(shipment_id=request.shipment_id, cancelled=True)
