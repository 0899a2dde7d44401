"""Wires the notifications unit: the outbox behind notifications.send."""

from __future__ import annotations

from contracts.notifications import SEND
from mbs import Binding, Unit, UnitStore
from services.notifications.handlers import Outbox


def build(store: UnitStore | None = None) -> Unit:
    state = store or UnitStore.temporary()
    return Unit("notifications", [Binding(SEND, Outbox(state).send)], store=state)
