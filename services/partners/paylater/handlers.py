"""PayLater: any amount up to 5000.00 is granted, no card is declined; refunds once per charge
(asking again gets the same refund)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from mbs import BusinessError, UnitStore, dry_run
from services.partners.paylater.models import Charge, ChargeRequest, Refund, RefundRequest

PROVIDER = "paylater"
CREDIT_LIMIT = Decimal("5000.00")


def _new_id(prefix: str) -> str:
    real = f"{prefix}-{uuid.uuid4().hex[:12]}"
    return f"dry-{real}" if dry_run() else real


class PayLaterAccounts:
    """The pay-later charges granted and the refunds given, by charge id, kept in the store."""

    def __init__(self, store: UnitStore) -> None:
        self.charges = store.table("charges", Charge)
        self.refunds = store.table("refunds", Refund)

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
            self.charges.put(charge.charge_id, charge)
        return charge

    async def refund(self, request: RefundRequest) -> Refund:
        """An undo, so idempotent: a charge refunded before gets that same refund again."""
        charge = self.charges.get(request.charge_id)
        if charge is None:
            raise BusinessError(
                "unknown_charge", f"PayLater has no charge {request.charge_id!r}; check the id"
            )
        earlier = self.refunds.get(charge.charge_id)
        if earlier is not None:
            return earlier
        refund = Refund(refund_id=_new_id("plr"), charge_id=charge.charge_id, amount=charge.amount)
        if not dry_run():
            self.refunds.put(charge.charge_id, refund)
        return refund
