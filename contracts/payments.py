"""Payments unit: charges a card and refunds a charge (the compensation)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mbs import DeclaredError, ModelContract, PositiveMoney, Pricing, Sla, declare


class ChargeRequest(BaseModel):
    """Take `amount` from the customer's card for an order."""

    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=64)
    customer_id: str = Field(min_length=1, max_length=64)
    amount: PositiveMoney
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    card_token: str = Field(
        min_length=4, max_length=64, json_schema_extra={"writeOnly": True}
    )  # a secret: the platform sends it to the unit, never keeps or returns it


class Charge(BaseModel):
    """Money taken."""

    model_config = ConfigDict(extra="forbid")

    charge_id: str
    order_id: str
    amount: PositiveMoney
    currency: str
    provider: str


class RefundRequest(BaseModel):
    """Give back a charge."""

    model_config = ConfigDict(extra="forbid")

    charge_id: str = Field(min_length=1)


class Refund(BaseModel):
    """Money given back."""

    model_config = ConfigDict(extra="forbid")

    refund_id: str
    charge_id: str
    amount: PositiveMoney


CHARGE_ERRORS = [
    DeclaredError(code="card_declined", description="The issuer refused the charge."),
    DeclaredError(code="limit_exceeded", description="Above the customer's limit."),
    DeclaredError(code="provider_unavailable", retryable=True),
]
REFUND_ERRORS = [DeclaredError(code="unknown_charge"), DeclaredError(code="already_refunded")]


def charge_contract(
    unit: str, owner: str, kind: Literal["internal", "partner"], pricing: Pricing, p99_ms: int
) -> ModelContract[ChargeRequest, Charge]:
    """The payments.charge contract as offered by one provider."""
    return declare(
        unit=unit,
        owner=owner,
        kind=kind,
        capability="payments.charge",
        version="2.1.0",  # 2: money a decimal string; 2.1: card_token writeOnly (secret)
        description="Charge a customer's card for an order; undone by payments.refund.",
        request=ChargeRequest,
        reply=Charge,
        errors=CHARGE_ERRORS,
        side_effects=True,
        compensation="payments.refund",
        supports_dry_run=True,
        sla=Sla(p99_ms=p99_ms, availability=0.999),
        pricing=pricing,
    )


def refund_contract(
    unit: str, owner: str, kind: Literal["internal", "partner"], pricing: Pricing, p99_ms: int
) -> ModelContract[RefundRequest, Refund]:
    """The payments.refund contract as offered by one provider."""
    return declare(
        unit=unit,
        owner=owner,
        kind=kind,
        capability="payments.refund",
        version="2.0.0",  # 2: money became a decimal string (mbs.contract.money)
        description="Refund a charge in full (idempotent per charge).",
        request=RefundRequest,
        reply=Refund,
        errors=REFUND_ERRORS,
        side_effects=True,
        sla=Sla(p99_ms=p99_ms, availability=0.999),
        pricing=pricing,
    )


_PRICING = Pricing(
    price_per_call=Decimal("0.0300"),
    cost_per_call=Decimal("0.0150"),
    cost_per_cpu_second=Decimal("0.0100"),
)
CHARGE = charge_contract("payments", "team-payments", "internal", _PRICING, 150)
REFUND = refund_contract("payments", "team-payments", "internal", _PRICING, 150)
