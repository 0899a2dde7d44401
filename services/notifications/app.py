"""Wires the notifications unit: the outbox behind notifications.send."""

from __future__ import annotations

from contracts.notifications import SEND
from mbs.unit import Binding, Unit
from services.notifications.handlers import Outbox


def build(outbox: Outbox | None = None) -> Unit:
    return Unit("notifications", [Binding(SEND, (outbox or Outbox()).send)])
