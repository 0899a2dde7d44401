"""Stock keeping: reservations take stock, releases give it back exactly once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from contracts.inventory import Release, ReleaseRequest, Reservation, ReserveRequest
from mbs.errors import BusinessError

OPENING_STOCK = {
    "espresso-beans-1kg": 5000,
    "grinder-c40": 20,
    "milk-jug-350ml": 100,
    "descaler-500ml": 0,
}


@dataclass
class Stock:
    """On-hand quantities and the open reservations against them."""

    on_hand: dict[str, int] = field(default_factory=lambda: dict(OPENING_STOCK))
    reservations: dict[str, Reservation] = field(default_factory=dict)

    async def reserve(self, request: ReserveRequest) -> Reservation:
        if request.sku not in self.on_hand:
            raise BusinessError("unknown_sku", f"{request.sku!r} is not stocked")
        available = self.on_hand[request.sku]
        if available < request.quantity:
            raise BusinessError(
                "out_of_stock", f"{request.quantity} x {request.sku} wanted, {available} left"
            )
        self.on_hand[request.sku] = available - request.quantity
        reservation = Reservation(
            reservation_id=f"res-{uuid.uuid4().hex[:12]}",
            order_id=request.order_id,
            sku=request.sku,
            quantity=request.quantity,
            remaining=self.on_hand[request.sku],
        )
        self.reservations[reservation.reservation_id] = reservation
        return reservation

    async def release(self, request: ReleaseRequest) -> Release:
        reservation = self.reservations.pop(request.reservation_id, None)
        if reservation is None:
            raise BusinessError("unknown_reservation", f"{request.reservation_id!r} is not open")
        self.on_hand[reservation.sku] += reservation.quantity
        return Release(
            reservation_id=reservation.reservation_id,
            released=reservation.quantity,
            remaining=self.on_hand[reservation.sku],
        )
