"""Stock keeping: reservations take stock, releases give it back exactly once (asking again
gets the same release)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from contracts.inventory import Release, ReleaseRequest, Reservation, ReserveRequest
from mbs import BusinessError, UnitStore

OPENING_STOCK = {
    "espresso-beans-1kg": 5000,
    "grinder-c40": 20,
    "milk-jug-350ml": 100,
    "descaler-500ml": 0,
}


class Stock:
    """On-hand quantities, reservations and releases, kept in the unit's store. A SKU starts
    at its opening stock the first time the store sees it, so a restart never restocks it."""

    def __init__(self, store: UnitStore, opening: Mapping[str, int] = OPENING_STOCK) -> None:
        self.opening = dict(opening)
        self.on_hand = store.table("on_hand", int)
        self.reservations = store.table("reservations", Reservation)
        self.releases = store.table("releases", Release)

    def available(self, sku: str) -> int | None:
        """Units of `sku` on hand; None for a SKU that is not stocked."""
        stored = self.on_hand.get(sku)
        return self.opening.get(sku) if stored is None else stored

    async def reserve(self, request: ReserveRequest) -> Reservation:
        available = self.available(request.sku)
        if available is None:
            raise BusinessError("unknown_sku", f"{request.sku!r} is not stocked")
        if available < request.quantity:
            raise BusinessError(
                "out_of_stock", f"{request.quantity} x {request.sku} wanted, {available} left"
            )
        self.on_hand.put(request.sku, available - request.quantity)
        reservation = Reservation(
            reservation_id=f"res-{uuid.uuid4().hex[:12]}",
            order_id=request.order_id,
            sku=request.sku,
            quantity=request.quantity,
            remaining=available - request.quantity,
        )
        self.reservations.put(reservation.reservation_id, reservation)
        return reservation

    async def release(self, request: ReleaseRequest) -> Release:
        """An undo, so idempotent: a reservation released before gets that same release."""
        earlier = self.releases.get(request.reservation_id)
        if earlier is not None:
            return earlier
        reservation = self.reservations.get(request.reservation_id)
        if reservation is None:
            raise BusinessError(
                "unknown_reservation", f"{request.reservation_id!r} was never reserved here"
            )
        remaining = (self.available(reservation.sku) or 0) + reservation.quantity
        self.on_hand.put(reservation.sku, remaining)
        release = Release(
            reservation_id=reservation.reservation_id,
            released=reservation.quantity,
            remaining=remaining,
        )
        self.releases.put(release.reservation_id, release)
        return release
