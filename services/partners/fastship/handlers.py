"""FastShip: next-day delivery within DE, AT and CH only; cancelling twice is harmless."""

from __future__ import annotations

import uuid

from mbs import BusinessError, UnitStore, dry_run
from services.partners.fastship.models import Booking, BookingRequest, Cancellation, CancelRequest

CARRIER = "FastShip"
SERVED_COUNTRIES = frozenset({"DE", "AT", "CH"})
NEXT_DAY = 1
FIRST_TRACKING_NUMBER = 20_250_001


def _new_shipment_id() -> str:
    real = f"fs-{uuid.uuid4().hex[:12]}"
    return f"dry-{real}" if dry_run() else real


class FastShipDepot:
    """FastShip's parcels booked, the cancelled ones, and the next tracking number, kept in
    the unit's store."""

    def __init__(self, store: UnitStore, first_tracking: int = FIRST_TRACKING_NUMBER) -> None:
        self.first_tracking = first_tracking
        self.bookings = store.table("bookings", Booking)
        self.cancellations = store.table("cancellations", Cancellation)
        self.counters = store.table("counters", int)

    def next_tracking(self) -> int:
        stored = self.counters.get("next_tracking")
        return self.first_tracking if stored is None else stored

    async def book(self, request: BookingRequest) -> Booking:
        if request.country not in SERVED_COUNTRIES:
            served = ", ".join(sorted(SERVED_COUNTRIES))
            raise BusinessError(
                "address_unserviceable",
                f"{CARRIER} delivers only in {served}, not {request.country}; "
                "ship with another carrier",
            )
        tracking = self.next_tracking()
        booking = Booking(
            shipment_id=_new_shipment_id(),
            order_id=request.order_id,
            carrier=CARRIER,
            tracking_number=f"FS-{tracking:08d}",
            eta_days=NEXT_DAY,
        )
        if not dry_run():
            self.bookings.put(booking.shipment_id, booking)
            self.counters.put("next_tracking", tracking + 1)
        return booking

    async def cancel(self, request: CancelRequest) -> Cancellation:
        """An undo, so idempotent: a shipment cancelled before is answered cancelled again."""
        earlier = self.cancellations.get(request.shipment_id)
        if earlier is not None:
            return earlier
        if self.bookings.get(request.shipment_id) is None:
            raise BusinessError(
                "unknown_shipment", f"{CARRIER} has no shipment {request.shipment_id!r}"
            )
        cancellation = Cancellation(shipment_id=request.shipment_id, cancelled=True)
        if not dry_run():
            self.cancellations.put(request.shipment_id, cancellation)
        return cancellation
