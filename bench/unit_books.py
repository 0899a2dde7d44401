"""The units' own books, read-only from their SQLite state files: what was charged, refunded,
reserved, released, booked and cancelled, whatever the journey log says.

Read as plain JSON from the kit's `state` table (`tbl`, `key`, `value`), not through the
units' models: the checker must see what the platform wrote, not what its code expects."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Record = dict[str, Any]
SHIPPERS = ("shipping", "fastship")


def read_table(state_dir: Path, unit: str, table: str) -> dict[str, Any]:
    """One table of one unit, by key; empty when the unit never wrote a state file."""
    path = state_dir / f"{unit}.sqlite3"
    if not path.exists():
        return {}
    # read-only: the checker must never change what it judges
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT key, value FROM state WHERE tbl = ? ORDER BY rowid", (table,))
        return {key: json.loads(value) for key, value in rows}
    finally:
        db.close()


@dataclass
class Books:
    """Every unit's records the invariants need, keyed as the units key them."""

    charges: dict[str, Record] = field(default_factory=dict)  # charge_id -> Charge
    refunds: dict[str, Record] = field(default_factory=dict)  # charge_id -> Refund
    on_hand: dict[str, int] = field(default_factory=dict)  # sku -> units (absent: opening)
    reservations: dict[str, Record] = field(default_factory=dict)  # reservation_id -> ...
    releases: dict[str, Record] = field(default_factory=dict)  # reservation_id -> Release
    bookings: dict[str, dict[str, Record]] = field(default_factory=dict)  # unit -> id -> ...
    cancellations: dict[str, dict[str, Record]] = field(default_factory=dict)
    sent: dict[str, Record] = field(default_factory=dict)  # notification_id -> SentMessage

    @classmethod
    def read(cls, state_dir: Path) -> Books:
        return cls(
            charges=read_table(state_dir, "payments", "charges"),
            refunds=read_table(state_dir, "payments", "refunds"),
            on_hand={k: int(v) for k, v in read_table(state_dir, "inventory", "on_hand").items()},
            reservations=read_table(state_dir, "inventory", "reservations"),
            releases=read_table(state_dir, "inventory", "releases"),
            bookings={u: read_table(state_dir, u, "bookings") for u in SHIPPERS},
            cancellations={u: read_table(state_dir, u, "cancellations") for u in SHIPPERS},
            sent=read_table(state_dir, "notifications", "sent"),
        )

    def live_charges(self, order_id: str) -> list[str]:
        """Charge ids of `order_id` that were never refunded."""
        return [
            cid
            for cid, c in self.charges.items()
            if c.get("order_id") == order_id and cid not in self.refunds
        ]

    def held_reservations(self, order_id: str) -> list[str]:
        """Reservation ids of `order_id` whose stock was never released."""
        return [
            rid
            for rid, r in self.reservations.items()
            if r.get("order_id") == order_id and rid not in self.releases
        ]

    def live_bookings(self, order_id: str) -> list[str]:
        """`unit:shipment_id` of the parcels of `order_id` never cancelled."""
        return [
            f"{unit}:{sid}"
            for unit, booked in self.bookings.items()
            for sid, b in booked.items()
            if b.get("order_id") == order_id and sid not in self.cancellations.get(unit, {})
        ]

    def orders(self) -> set[str]:
        """Every order id any unit holds a side effect for."""
        found = {str(c.get("order_id")) for c in self.charges.values()}
        found |= {str(r.get("order_id")) for r in self.reservations.values()}
        for booked in self.bookings.values():
            found |= {str(b.get("order_id")) for b in booked.values()}
        return found

    def stock_moves(self) -> dict[str, tuple[int, int]]:
        """Per SKU: units ever reserved, units ever given back by a release."""
        moves: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for rid, r in self.reservations.items():
            moves[r["sku"]][0] += int(r["quantity"])
            if rid in self.releases:
                moves[r["sku"]][1] += int(self.releases[rid]["released"])
        return {sku: (m[0], m[1]) for sku, m in moves.items()}

    def has_effect(self, unit: str, capability: str, output: Record) -> str | None:
        """Where the units' books show the effect a call's reply reports; None (found) or
        what is missing."""
        key, table = _EFFECTS.get(capability, ("", ""))
        if not key:
            return None  # no record of it is kept (pricing, fraud)
        ident = str(output.get(key, ""))
        records = self._table(unit, table)
        if ident not in records:
            return f"{unit} has no {table} record {ident!r}"
        kept, said = records[ident].get("refund_id"), output.get("refund_id")
        if capability == "payments.refund" and kept != said:
            return f"{unit} refunded {ident} as {kept}, the run says {said}"
        return None

    def is_undone(self, unit: str, capability: str, output: Record) -> str | None:
        """Whether the units' books show a done call's effect undone; None (yes) or why not."""
        if capability == "payments.charge":
            found = str(output.get("charge_id")) in self.refunds
            what = f"charge {output.get('charge_id')} not refunded"
        elif capability == "inventory.reserve":
            found = str(output.get("reservation_id")) in self.releases
            what = f"reservation {output.get('reservation_id')} not released"
        elif capability == "shipping.book":
            found = str(output.get("shipment_id")) in self.cancellations.get(unit, {})
            what = f"{unit} booking {output.get('shipment_id')} not cancelled"
        else:
            return None  # kept by design (a sent message), nothing to undo
        return None if found else what

    def _table(self, unit: str, table: str) -> dict[str, Record]:
        if table in ("bookings", "cancellations"):
            return (self.bookings if table == "bookings" else self.cancellations).get(unit, {})
        found: dict[str, Record] = getattr(self, table)
        return found


# capability -> (the reply field the unit keys its record by, the table holding it)
_EFFECTS = {
    "payments.charge": ("charge_id", "charges"),
    "payments.refund": ("charge_id", "refunds"),
    "inventory.reserve": ("reservation_id", "reservations"),
    "inventory.release": ("reservation_id", "releases"),
    "shipping.book": ("shipment_id", "bookings"),
    "shipping.cancel": ("shipment_id", "cancellations"),
    "notifications.send": ("notification_id", "sent"),
}
