"""Wires the shipping unit: one shipment book behind book and cancel."""

from __future__ import annotations

from contracts.shipping import BOOK, CANCEL
from mbs.unit import Binding, Unit
from services.shipping.handlers import ShipmentBook


def build(shipments: ShipmentBook | None = None) -> Unit:
    book = shipments or ShipmentBook()
    return Unit("shipping", [Binding(BOOK, book.book), Binding(CANCEL, book.cancel)])
