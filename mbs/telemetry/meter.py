"""The unit side's telemetry seam: the server reports each answer once, here, and the
metrics and span attributes follow from it; handlers and the server hold no metric code."""

from __future__ import annotations

from decimal import Decimal

from opentelemetry import trace

from mbs.contract.model import Contract
from mbs.telemetry import metrics

NS_PER_SECOND = Decimal(1_000_000_000)


class UnitMeter:
    """Counts, times and prices the answers of one capability of one unit."""

    def __init__(self, unit: str, contract: Contract) -> None:
        self.unit = unit
        self.contract = contract
        self.labels = {"unit": unit, "capability": contract.capability}
        self.money = {**self.labels, "currency": contract.pricing.currency}

    def cost(self, cpu_ns: int) -> Decimal:
        """What one call cost the unit: the contract's `cost_per_call` plus the CPU seconds it
        measured times `cost_per_cpu_second`. CPU time comes in integer nanoseconds and money
        is Decimal, so the amount is exact: no float rounds part of it away."""
        pricing = self.contract.pricing
        return pricing.cost_per_call + pricing.cost_per_cpu_second * cpu_ns / NS_PER_SECOND

    def price(self, *, billed: bool) -> Decimal:
        """What one call earns: the contract's `price_per_call` for an answer that is billed
        (done, not a dry run); a business error, a refusal or a dry run earns nothing."""
        return self.contract.pricing.price_per_call if billed else Decimal(0)

    def answered(
        self,
        outcome: str,
        *,
        cost: Decimal,
        price: Decimal,
        handler_s: float | None,
        error: str | None,
        shadow: bool,
    ) -> None:
        """One answer was committed: its outcome, its handler time, what it cost and earned."""
        self.counted(outcome)
        if handler_s is not None:
            metrics.UNIT_HANDLER_SECONDS.labels(**self.labels).observe(handler_s)
        trace.get_current_span().set_attributes(
            {
                "mbs.unit": self.unit,
                "mbs.owner": self.contract.owner,
                "mbs.capability": self.contract.capability,
                "mbs.provider": self.unit,
                "mbs.cost": float(cost),
                "mbs.price": float(price),
                "mbs.outcome": error or "ok",
            }
        )
        if not shadow:  # a dry run is the candidate's cost of winning business
            metrics.UNIT_COST.labels(**self.money).inc(float(cost))
            metrics.UNIT_REVENUE.labels(**self.money).inc(float(price))

    def counted(self, outcome: str) -> None:
        """A request ended with `outcome` (ok, business_error, invalid, failed, shadow)."""
        metrics.UNIT_REQUESTS.labels(
            **self.labels, version=self.contract.version, outcome=outcome
        ).inc()

    def dead_lettered(self, reason: str) -> None:
        metrics.UNIT_DLQ.labels(**self.labels, reason=reason).inc()
