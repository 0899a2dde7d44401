"""Wires the payments unit: one card ledger behind charge and refund."""

from __future__ import annotations

from contracts.payments import CHARGE, REFUND
from mbs.unit import Binding, Unit
from services.payments.handlers import CardLedger


def build(ledger: CardLedger | None = None) -> Unit:
    book = ledger or CardLedger()
    return Unit("payments", [Binding(CHARGE, book.charge), Binding(REFUND, book.refund)])
