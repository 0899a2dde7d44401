"""Pricing unit: quotes a price for a quantity of one catalogue item."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from mbs import DeclaredError, Money, Pricing, Sla, declare


class QuoteRequest(BaseModel):
    """Ask the price of `quantity` units of `sku`."""

    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=10_000)


class Quote(BaseModel):
    """The price the customer pays."""

    model_config = ConfigDict(extra="forbid")

    sku: str
    quantity: int
    unit_price: Money
    total: Money
    currency: str


QUOTE = declare(
    unit="pricing",
    owner="team-pricing",
    capability="pricing.quote",
    version="2.0.0",  # 2: money became a decimal string (mbs.contract.money)
    description="Price a quantity of a catalogue item, volume discounts included.",
    request=QuoteRequest,
    reply=Quote,
    errors=[DeclaredError(code="unknown_sku", description="The SKU is not in the catalogue.")],
    sla=Sla(p99_ms=50, availability=0.999),
    pricing=Pricing(
        price_per_call=Decimal("0.0020"),
        cost_per_call=Decimal("0.0005"),
        cost_per_cpu_second=Decimal("0.0100"),
    ),
)
