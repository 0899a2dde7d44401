"""FastShip: next-day delivery within DE, AT and CH only; cancelling twice is harmless."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from mbs.errors import BusinessError
from mbs.unit import dry_run
from services.partners.fastship.models import Booking, BookingRequest, Cancellation, CancelRequest

CARRIER = "FastShip"
SERVED_COUNTRIES = frozenset({"DE", "AT", "CH"})
NEXT_DAY = 1
FIRST_TRACKING_NUMBER = 20_250_001


def _new_shipment_id() -> str:
    real = f"fs-{uuid.uuid4().hex[:12]}"
    return f"dry-{real}" if dry_run() else real


@dataclass
class FastShipDepot:
    """FastShip's parcels booked, the cancelled ones, and the next tracking number."""

    bookings: dict[str, Booking] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    next_tracking: int = FIRST_TRACKING_NUMBER

    async def book(self, request: BookingRequest) -> Booking:
        if request.country not in SERVED_COUNTRIES:
            served = ", ".join(sorted(SERVED_COUNTRIES))
            raise BusinessError(
                "address_unserviceable",
                f"{CARRIER} delivers only in {served}, not {request.country}; "
                "ship with another carrier",
            )
        booking = Booking(
            shipment_id=_new_shipment_id(),
            order_id=request.order_id,
            carrier=CARRIER,
            tracking_number=f"FS-{self.next_tracking:08d}",
            eta_days=NEXT_DAY,
        )
        if not dry_run():
            self.bookings[booking.shipment_id] = booking
            self.next_tracking += 1
        return booking

    async def cancel(self, request: CancelRequest) -> Cancellation:
        if request.shipment_id not in self.bookings:
            raise BusinessError(
                "unknown_shipment", f"{CARRIER} has no shipment {request.shipment_id!r}"
            )
        if not dry_run():
            self.cancelled.add(request.shipment_id)
        return Cancellation(shipment_id=request.shipment_id, cancelled=True)
