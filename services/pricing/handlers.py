"""Pricing rules: list price per SKU with a volume discount."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from contracts.pricing import Quote, QuoteRequest
from mbs import BusinessError

CATALOG: dict[str, Decimal] = {
    "espresso-beans-1kg": Decimal("24.90"),
    "grinder-c40": Decimal("249.00"),
    "milk-jug-350ml": Decimal("18.50"),
    "descaler-500ml": Decimal("9.95"),
}
VOLUME_BREAK = 10
VOLUME_DISCOUNT = Decimal("0.95")


async def quote(request: QuoteRequest, *, catalog: dict[str, Decimal] = CATALOG) -> Quote:
    """Price the request; 10 or more units get 5% off."""
    try:
        unit_price = catalog[request.sku]
    except KeyError:
        raise BusinessError("unknown_sku", f"{request.sku!r} is not in the catalogue") from None
    if request.quantity >= VOLUME_BREAK:
        unit_price = (unit_price * VOLUME_DISCOUNT).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return Quote(
        sku=request.sku,
        quantity=request.quantity,
        unit_price=unit_price,
        total=unit_price * request.quantity,
        currency="EUR",
    )
