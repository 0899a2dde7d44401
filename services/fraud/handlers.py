"""Fraud scoring: a deterministic risk score from who buys, how much, and from where."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from contracts.fraud import RiskScore, ScoreRequest
from mbs import BusinessError

EU_COUNTRIES = frozenset(
    {"AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU"}
    | {"IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"}
)
KNOWN_FRAUDSTER_PREFIX = "fraud-"
KNOWN_FRAUDSTER_SCORE = 95
CUSTOMER_RISK_SPREAD = 40
LARGE_ORDER = Decimal("1000.00")
LARGE_ORDER_RISK = 30
NON_EU_RISK = 25
BLOCK_FROM = 80
REVIEW_FROM = 50


@dataclass(frozen=True)
class RiskModel:
    """Scores orders 0-100; the seed makes a customer's base risk stable across processes."""

    seed: str = "mbs-fraud-v1"
    home_countries: frozenset[str] = EU_COUNTRIES

    async def score(self, request: ScoreRequest) -> RiskScore:
        points = self.points(request)
        if points >= BLOCK_FROM:
            raise BusinessError(
                "high_risk", f"order {request.order_id} scored {points} (blocked from {BLOCK_FROM})"
            )
        decision: Literal["allow", "review"] = "review" if points >= REVIEW_FROM else "allow"
        return RiskScore(order_id=request.order_id, score=points, decision=decision)

    def points(self, request: ScoreRequest) -> int:
        if request.customer_id.startswith(KNOWN_FRAUDSTER_PREFIX):
            return KNOWN_FRAUDSTER_SCORE
        points = self.customer_risk(request.customer_id)
        if request.amount > LARGE_ORDER:
            points += LARGE_ORDER_RISK
        if request.country not in self.home_countries:
            points += NON_EU_RISK
        return points

    def customer_risk(self, customer_id: str) -> int:
        """0..39; a seeded digest, not `hash()`, which differs between processes."""
        digest = hashlib.sha256(f"{self.seed}:{customer_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % CUSTOMER_RISK_SPREAD
