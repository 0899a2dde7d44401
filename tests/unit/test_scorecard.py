"""The scorecard and ledger count a call once, whatever number of times it was asked."""

from __future__ import annotations

from decimal import Decimal

import contracts
from gateway.catalog import Catalog
from gateway.models import Call
from gateway.scorecard import Scorecard


def _call(outcome: str, price: str, message_id: str = "run:pay:payments:1") -> Call:
    return Call(
        unit="payments",
        capability="payments.charge",
        message_id=message_id,
        outcome=outcome,
        price=Decimal(price),
        cost=Decimal("0.01") if outcome == "ok" else Decimal(0),
        latency_ms=3.0,
    )


def test_a_call_settled_after_a_timeout_counts_once_with_its_final_answer() -> None:
    card = Scorecard(Catalog(contracts.all_contracts()))
    card.record(_call("timeout", "0"))
    card.record(_call("ok", "0.03"))  # the same message id, answered from the unit's memory
    card.record(_call("ok", "0.03"))  # and asked once more
    (line,) = card.ledger()
    assert (line["calls"], line["charged"]) == (1, "0.03")
    (row,) = card.unit("payments")["capabilities"]
    assert (row["calls"], row["ok"], row["failures"], row["revenue"]) == (1, 1, 0, "0.03")


def test_different_calls_each_count() -> None:
    card = Scorecard(Catalog(contracts.all_contracts()))
    card.record(_call("ok", "0.03", "a"))
    card.record(_call("failed", "0", "b"))
    (row,) = card.unit("payments")["capabilities"]
    assert (row["calls"], row["ok"], row["failures"], row["revenue"]) == (2, 1, 1, "0.03")
