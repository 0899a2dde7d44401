"""Wires the inventory unit: one stock book behind both capabilities."""

from __future__ import annotations

from contracts.inventory import RELEASE, RESERVE
from mbs import Binding, Unit, UnitStore
from services.inventory.handlers import Stock


def build(store: UnitStore | None = None) -> Unit:
    state = store or UnitStore.temporary()
    book = Stock(state)
    bindings = [Binding(RESERVE, book.reserve), Binding(RELEASE, book.release)]
    return Unit("inventory", bindings, store=state)
