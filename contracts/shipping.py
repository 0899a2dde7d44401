"""Shipping: books a parcel with a carrier and cancels a booking (the compensation).

The same two capabilities are offered by the in-house `shipping` unit and by partners
(`fastship`), so the models and the contract builders are shared.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mbs import DeclaredError, ModelContract, Pricing, Sla, declare


class BookingRequest(BaseModel):
    """Ship an order's parcel to an address."""

    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=64)
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=10_000)
    postcode: str = Field(min_length=3, max_length=12)
    country: str = Field(default="DE", pattern=r"^[A-Z]{2}$")


class Booking(BaseModel):
    """A parcel booked with a carrier."""

    model_config = ConfigDict(extra="forbid")

    shipment_id: str
    order_id: str
    carrier: str
    tracking_number: str
    eta_days: int


class CancelRequest(BaseModel):
    """Cancel a booking before pick-up."""

    model_config = ConfigDict(extra="forbid")

    shipment_id: str = Field(min_length=1)


class Cancellation(BaseModel):
    """A booking cancelled."""

    model_config = ConfigDict(extra="forbid")

    shipment_id: str
    cancelled: bool


def book_contract(
    unit: str, owner: str, kind: Literal["internal", "partner"], pricing: Pricing, p99_ms: int
) -> ModelContract[BookingRequest, Booking]:
    """shipping.book as offered by one provider."""
    return declare(
        unit=unit,
        owner=owner,
        kind=kind,
        capability="shipping.book",
        version="1.0.0",
        description="Book a parcel for an order; undone by shipping.cancel.",
        request=BookingRequest,
        reply=Booking,
        errors=[
            DeclaredError(code="address_unserviceable", description="No delivery there."),
            DeclaredError(code="carrier_unavailable", retryable=True),
        ],
        side_effects=True,
        compensation="shipping.cancel",
        supports_dry_run=True,
        sla=Sla(p99_ms=p99_ms, availability=0.995),
        pricing=pricing,
    )


def cancel_contract(
    unit: str, owner: str, kind: Literal["internal", "partner"], pricing: Pricing, p99_ms: int
) -> ModelContract[CancelRequest, Cancellation]:
    """shipping.cancel as offered by one provider."""
    return declare(
        unit=unit,
        owner=owner,
        kind=kind,
        capability="shipping.cancel",
        version="1.0.0",
        description="Cancel a booking (idempotent).",
        request=CancelRequest,
        reply=Cancellation,
        errors=[DeclaredError(code="unknown_shipment")],
        side_effects=True,
        sla=Sla(p99_ms=p99_ms, availability=0.995),
        pricing=pricing,
    )


_PRICING = Pricing(
    price_per_call=Decimal("4.9000"),
    cost_per_call=Decimal("4.2000"),
    cost_per_cpu_second=Decimal("0.0100"),
)
BOOK = book_contract("shipping", "team-logistics", "internal", _PRICING, 200)
CANCEL = cancel_contract("shipping", "team-logistics", "internal", _PRICING, 200)
