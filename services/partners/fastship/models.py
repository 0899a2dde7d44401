"""FastShip's own models, written to honour contracts/partners/fastship.json."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
