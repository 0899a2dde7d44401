"""PayLater: any amount up to 5000.00 is granted, no card is declined; refunds once per charge."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from mbs.errors import BusinessError
from mbs.unit import dry_run
from services.partners.paylater.models import Charge, ChargeRequest, Refund, RefundRequest

PROVIDER = "paylater"
CREDIT_LIMIT = Decimal("5000.00")


def _new_id(prefix: str) -> str:
    real = f"{prefix}-{uuid.uuid4().hex[:12]}"
    return f"dry-{real}" if dry_run() else real


@dataclass
class PayLaterAccounts:
    """The pay-later charges granted and which of them were refunded."""

    charges: dict[str, Charge] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)

    async def charge(self, request: ChargeRequest) -> Charge:
        if request.amount > CREDIT_LIMIT:
            raise BusinessError(
                "limit_exceeded",
                f"{request.amount} {request.currency} is above PayLater's {CREDIT_LIMIT} limit; "
                "split the order or pay by card",
            )
        charge = Charge(
            charge_id=_new_id("pl"),
            order_id=request.order_id,
            amount=request.amount,
            currency=request.currency,
            provider=PROVIDER,
        )
        if not dry_run():
            self.charges[charge.charge_id] = charge
        return charge

    async def refund(self, request: RefundRequest) -> Refund:
        charge = self.charges.get(request.charge_id)
        if charge is None:
            raise BusinessError(
                "unknown_charge", f"PayLater has no charge {request.charge_id!r}; check the id"
            )
        if charge.charge_id in self.refunds:
            raise BusinessError(
                "already_refunded", f"{charge.charge_id!r} was refunded before; nothing to do"
            )
        refund = Refund(refund_id=_new_id("plr"), charge_id=charge.charge_id, amount=charge.amount)
        if not dry_run():
            self.refunds[charge.charge_id] = refund
        return refund
