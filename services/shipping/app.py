"""Wires the shipping unit: one shipment book behind book and cancel."""

from __future__ import annotations

from contracts.shipping import BOOK, CANCEL
from mbs import Binding, Unit, UnitStore
from services.shipping.handlers import ShipmentBook


def build(store: UnitStore | None = None) -> Unit:
    state = store or UnitStore.temporary()
    book = ShipmentBook(state)
    bindings = [Binding(BOOK, book.book), Binding(CANCEL, book.cancel)]
    return Unit("shipping", bindings, store=state)
