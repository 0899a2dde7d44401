"""PayLater's own models, written to honour contracts/partners/paylater.json."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from mbs import PositiveMoney


class ChargeRequest(BaseModel):
    """Take `amount` from the customer's card for an order."""

    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=64)
    customer_id: str = Field(min_length=1, max_length=64)
    amount: PositiveMoney
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    card_token: str = Field(min_length=4, max_length=64, json_schema_extra={"writeOnly": True})


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
