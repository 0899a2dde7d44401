"""Wires the inventory unit: one stock book behind both capabilities."""

from __future__ import annotations

from contracts.inventory import RELEASE, RESERVE
from mbs.unit import Binding, Unit
from services.inventory.handlers import Stock


def build(stock: Stock | None = None) -> Unit:
    book = stock or Stock()
    return Unit("inventory", [Binding(RESERVE, book.reserve), Binding(RELEASE, book.release)])
