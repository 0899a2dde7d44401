"""Inventory unit: reserves stock for an order and releases it again (the compensation)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from mbs import DeclaredError, Pricing, Sla, declare


class ReserveRequest(BaseModel):
    """Hold `quantity` units of `sku` for `order_id`."""

    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=64)
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=10_000)


class Reservation(BaseModel):
    """Stock held for an order."""

    model_config = ConfigDict(extra="forbid")

    reservation_id: str
    order_id: str
    sku: str
    quantity: int
    remaining: int


class ReleaseRequest(BaseModel):
    """Give back the stock of a reservation."""

    model_config = ConfigDict(extra="forbid")

    reservation_id: str = Field(min_length=1)


class Release(BaseModel):
    """What was given back."""

    model_config = ConfigDict(extra="forbid")

    reservation_id: str
    released: int
    remaining: int


_PRICING = Pricing(
    price_per_call=Decimal("0.0050"),
    cost_per_call=Decimal("0.0010"),
    cost_per_cpu_second=Decimal("0.0100"),
)

RESERVE = declare(
    unit="inventory",
    owner="team-warehouse",
    capability="inventory.reserve",
    version="1.0.0",
    description="Reserve stock for an order; released again by inventory.release.",
    request=ReserveRequest,
    reply=Reservation,
    errors=[
        DeclaredError(code="out_of_stock", description="Not enough stock for the quantity."),
        DeclaredError(code="unknown_sku", description="The SKU is not stocked."),
    ],
    side_effects=True,
    compensation="inventory.release",
    sla=Sla(p99_ms=80, availability=0.999),
    pricing=_PRICING,
)

RELEASE = declare(
    unit="inventory",
    owner="team-warehouse",
    capability="inventory.release",
    version="1.0.0",
    description="Release a reservation made by inventory.reserve (idempotent).",
    request=ReleaseRequest,
    reply=Release,
    errors=[DeclaredError(code="unknown_reservation")],
    side_effects=True,
    sla=Sla(p99_ms=80, availability=0.999),
    pricing=_PRICING,
)
