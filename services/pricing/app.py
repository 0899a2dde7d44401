"""Wires the pricing unit: its contract bound to its handler."""

from __future__ import annotations

from contracts.pricing import QUOTE
from mbs import Binding, Unit
from services.pricing.handlers import quote


def build() -> Unit:
    return Unit("pricing", [Binding(QUOTE, quote)])
