"""The sample units' business rules, without Kafka."""

from __future__ import annotations

from decimal import Decimal

import pytest

from contracts.inventory import ReleaseRequest, ReserveRequest
from contracts.pricing import QuoteRequest
from mbs import BusinessError, UnitStore
from services.inventory.handlers import Stock
from services.pricing.handlers import quote


async def test_quote_uses_list_price_below_volume_break() -> None:
    reply = await quote(QuoteRequest(sku="grinder-c40", quantity=2))
    assert reply.unit_price == Decimal("249.00")
    assert reply.total == Decimal("498.00")


async def test_quote_gives_volume_discount_from_ten_units() -> None:
    reply = await quote(QuoteRequest(sku="espresso-beans-1kg", quantity=10))
    assert reply.unit_price == Decimal("23.66")  # 24.90 * 0.95, rounded half up
    assert reply.total == Decimal("236.60")


async def test_quote_refuses_unknown_sku() -> None:
    with pytest.raises(BusinessError) as err:
        await quote(QuoteRequest(sku="tamper-58mm", quantity=1))
    assert err.value.code == "unknown_sku"


async def test_stock_runs_out_and_comes_back_on_release_once() -> None:
    stock = Stock(UnitStore.temporary(), opening={"grinder-c40": 3})
    first = await stock.reserve(ReserveRequest(order_id="o1", sku="grinder-c40", quantity=2))
    assert first.remaining == 1
    with pytest.raises(BusinessError) as err:
        await stock.reserve(ReserveRequest(order_id="o2", sku="grinder-c40", quantity=2))
    assert err.value.code == "out_of_stock"
    released = await stock.release(ReleaseRequest(reservation_id=first.reservation_id))
    assert (released.released, released.remaining) == (2, 3)
    again = await stock.release(ReleaseRequest(reservation_id=first.reservation_id))
    assert again == released, "an undo is idempotent: the same release, stock given back once"
    assert stock.available("grinder-c40") == 3
    with pytest.raises(BusinessError, match="unknown_reservation"):
        await stock.release(ReleaseRequest(reservation_id="res-never-made"))
