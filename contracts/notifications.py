"""Notifications unit: tells the customer what happened to their order."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mbs import DeclaredError, Pricing, Sla, declare


class NotifyRequest(BaseModel):
    """A message for one customer."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, max_length=64)
    channel: Literal["email", "sms"] = "email"
    template: str = Field(min_length=1, max_length=64)
    order_id: str = Field(min_length=1, max_length=64)
    tracking_number: str | None = None


class Notification(BaseModel):
    """A message sent."""

    model_config = ConfigDict(extra="forbid")

    notification_id: str
    channel: str


SEND = declare(
    unit="notifications",
    owner="team-crm",
    capability="notifications.send",
    version="1.0.0",
    description="Send a templated e-mail or SMS to a customer.",
    request=NotifyRequest,
    reply=Notification,
    errors=[DeclaredError(code="unknown_template"), DeclaredError(code="opted_out")],
    side_effects=True,
    supports_dry_run=True,
    sla=Sla(p99_ms=100, availability=0.99),
    pricing=Pricing(
        price_per_call=Decimal("0.0080"),
        cost_per_call=Decimal("0.0050"),
        cost_per_cpu_second=Decimal("0.0100"),
    ),
)
