"""Wires the payments unit: one card ledger behind charge and refund."""

from __future__ import annotations

from contracts.payments import CHARGE, REFUND
from mbs import Binding, Unit, UnitStore
from services.payments.handlers import CardLedger


def build(store: UnitStore | None = None) -> Unit:
    state = store or UnitStore.temporary()
    book = CardLedger(state)
    bindings = [Binding(CHARGE, book.charge), Binding(REFUND, book.refund)]
    return Unit("payments", bindings, store=state)
