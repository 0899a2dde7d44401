"""Scorecards from what the gateway saw of every call: per unit its calls, errors, latency
against its SLA, revenue, cost and margin; per capability its providers side by side."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from gateway.catalog import Catalog
from gateway.models import Call, JourneyRun
from gateway.observers import JourneyObserver
from mbs.contract import Contract
from mbs.kafka import Reply

KEPT_LATENCIES = 5000
KEPT_CALLS = 100_000  # message ids remembered, so a call asked again counts once


@dataclass
class _Tally:
    calls: int = 0
    ok: int = 0
    business_errors: int = 0
    failures: int = 0
    revenue: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=KEPT_LATENCIES))
    agree: int = 0
    disagree: int = 0


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


class Scorecard(JourneyObserver):
    """Accumulates calls as the engine makes them; answers per unit and per capability."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._tallies: dict[tuple[str, str], _Tally] = {}
        self._ledger: dict[tuple[str, str], list[Decimal]] = {}  # (hour, unit) -> calls, price
        self._seen: OrderedDict[str, tuple[str, str, str, str, Decimal, Decimal]] = OrderedDict()

    def call_answered(
        self, run: JourneyRun, contract: Contract, call: Call, reply: Reply | None
    ) -> None:
        self.record(call)

    def shadow_compared(self, contract: Contract, agreement: str) -> None:
        self.record_shadow(contract.unit, contract.capability, agreement)

    def journey_finished(self, run: JourneyRun) -> None:
        """A decided run's calls are answered for good, but those still being settled: their
        message ids need not be remembered (the memory stays the size of the runs under way)."""
        for step in run.steps:
            for call in step.calls:
                if call.message_id not in run.unsettled:
                    self._seen.pop(call.message_id, None)

    def record(self, call: Call) -> None:
        """Count a call's answer. A call asked again under its message id (settled after a
        timeout or a crash) is one call: its latest answer replaces the earlier one, so a
        price is never counted twice."""
        earlier = self._seen.pop(call.message_id, None)
        if earlier is not None:
            self._count(*earlier, sign=-1)
        entry = (
            time.strftime("%Y-%m-%dT%H:00Z", time.gmtime()),
            call.unit,
            call.capability,
            call.outcome,
            call.price,
            call.cost,
        )
        self._count(*entry, sign=1)
        self._seen[call.message_id] = entry
        while len(self._seen) > KEPT_CALLS:
            self._seen.popitem(last=False)
        if call.latency_ms is not None and earlier is None:
            self._tallies[(call.unit, call.capability)].latencies.append(call.latency_ms)

    def _count(
        self,
        hour: str,
        unit: str,
        capability: str,
        outcome: str,
        price: Decimal,
        cost: Decimal,
        *,
        sign: int,
    ) -> None:
        entry = self._ledger.setdefault((hour, unit), [Decimal(0), Decimal(0)])
        entry[0] += sign
        entry[1] += sign * price
        tally = self._tallies.setdefault((unit, capability), _Tally())
        tally.calls += sign
        tally.revenue += sign * price
        tally.cost += sign * cost
        if outcome == "ok":
            tally.ok += sign
        elif outcome == "business_error":
            tally.business_errors += sign
        else:
            tally.failures += sign

    def record_shadow(self, unit: str, capability: str, agreement: str) -> None:
        tally = self._tallies.setdefault((unit, capability), _Tally())
        if agreement == "agree":
            tally.agree += 1
        else:
            tally.disagree += 1

    def units(self) -> list[dict[str, Any]]:
        names = sorted({unit for unit, _ in self._tallies})
        return [self.unit(name) for name in names]

    def unit(self, unit: str) -> dict[str, Any]:
        rows = [self._row(unit, cap, t) for (u, cap), t in self._tallies.items() if u == unit]
        calls = sum(r["calls"] for r in rows)
        revenue = sum((Decimal(r["revenue"]) for r in rows), Decimal(0))
        cost = sum((Decimal(r["cost"]) for r in rows), Decimal(0))
        contract = next((c for c in self.catalog.contracts() if c.unit == unit), None)
        return {
            "unit": unit,
            "owner": contract.owner if contract else "",
            "calls": calls,
            "revenue": str(revenue),
            "cost": str(cost),
            "margin": str(revenue - cost),
            "sla_met": all(r["sla_met"] for r in rows if r["calls"]),
            "capabilities": rows,
        }

    def _row(self, unit: str, capability: str, tally: _Tally) -> dict[str, Any]:
        contract = self.catalog.get(capability, unit)
        latencies = list(tally.latencies)
        sla_ms = contract.sla.p99_ms if contract else None
        within = sum(1 for v in latencies if sla_ms is None or v <= sla_ms)
        availability = 1 - tally.failures / tally.calls if tally.calls else None
        attainment = within / len(latencies) if latencies else None
        target = contract.sla.availability if contract else 0.0
        shadowed = tally.agree + tally.disagree
        return {
            "capability": capability,
            "unit": unit,
            "calls": tally.calls,
            "ok": tally.ok,
            "business_errors": tally.business_errors,
            "failures": tally.failures,
            "error_rate": round((tally.calls - tally.ok) / tally.calls, 4) if tally.calls else None,
            "p50_ms": _quantile(latencies, 0.5),
            "p95_ms": _quantile(latencies, 0.95),
            "p99_ms": _quantile(latencies, 0.99),
            "sla_p99_ms": sla_ms,
            "latency_attainment": None if attainment is None else round(attainment, 4),
            "availability": None if availability is None else round(availability, 4),
            "sla_availability": target,
            "sla_met": (attainment is None or attainment >= 0.99)
            and (availability is None or availability >= target),
            "price_per_call": str(contract.pricing.price_per_call) if contract else None,
            "revenue": str(tally.revenue),
            "cost": str(tally.cost),
            "margin": str(tally.revenue - tally.cost),
            "shadow_agreement": round(tally.agree / shadowed, 4) if shadowed else None,
            "shadow_comparisons": shadowed,
        }

    def ledger(self) -> list[dict[str, Any]]:
        """Per hour and unit: calls and what the unit charged; for a partner, what we owe it."""
        kinds = {c.unit: c.kind for c in self.catalog.contracts()}
        return [
            {
                "period": hour,
                "unit": unit,
                "kind": kinds.get(unit, "?"),
                "calls": int(calls),
                "charged": str(price),
            }
            for (hour, unit), (calls, price) in sorted(self._ledger.items())
        ]

    def capabilities(self) -> list[dict[str, Any]]:
        """Each capability with every provider the gateway called, side by side."""
        out = []
        for capability in sorted({cap for _, cap in self._tallies}):
            providers = [
                self._row(u, c, t) for (u, c), t in sorted(self._tallies.items()) if c == capability
            ]
            out.append({"capability": capability, "providers": providers})
        return out
