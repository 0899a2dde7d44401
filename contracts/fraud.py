"""Fraud unit: scores an order's risk; a high score blocks the order."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mbs import DeclaredError, Money, Pricing, Sla, declare


class ScoreRequest(BaseModel):
    """The order facts the risk model looks at."""

    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=64)
    customer_id: str = Field(min_length=1, max_length=64)
    amount: Money
    country: str = Field(default="DE", pattern=r"^[A-Z]{2}$")


class RiskScore(BaseModel):
    """The verdict: `allow` or `review`; `block` comes back as the `high_risk` error."""

    model_config = ConfigDict(extra="forbid")

    order_id: str
    score: int = Field(ge=0, le=100)
    decision: Literal["allow", "review"]


SCORE = declare(
    unit="fraud",
    owner="team-risk",
    capability="fraud.score",
    version="2.0.0",  # 2: money became a decimal string (mbs.contract.money)
    description="Score an order's fraud risk (0-100); 80 and above is refused as high_risk.",
    request=ScoreRequest,
    reply=RiskScore,
    errors=[DeclaredError(code="high_risk", description="Score 80 or more: do not sell.")],
    supports_dry_run=True,
    sla=Sla(p99_ms=60, availability=0.999),
    pricing=Pricing(
        price_per_call=Decimal("0.0100"),
        cost_per_call=Decimal("0.0040"),
        cost_per_cpu_second=Decimal("0.0100"),
    ),
)
