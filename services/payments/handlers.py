"""Card payments: charges within the limit, each refunded once (asking again gets the same
refund); dry runs keep nothing."""

from __future__ import annotations

import uuid
from decimal import Decimal

from contracts.payments import Charge, ChargeRequest, Refund, RefundRequest
from mbs import BusinessError, UnitStore, dry_run

PROVIDER = "payments"
CHARGE_LIMIT = Decimal("2000.00")
DECLINED_CARD_SUFFIX = "0000"


def _new_id(prefix: str) -> str:
    """A fresh id; a dry run's ids say so, so nobody mistakes them for real money."""
    real = f"{prefix}-{uuid.uuid4().hex[:12]}"
    return f"dry-{real}" if dry_run() else real


def _check_chargeable(request: ChargeRequest) -> None:
    if request.card_token.endswith(DECLINED_CARD_SUFFIX):
        raise BusinessError(
            "card_declined",
            f"the issuer declined card ...{request.card_token[-4:]}; ask for another card",
        )
    if request.amount > CHARGE_LIMIT:
        raise BusinessError(
            "limit_exceeded",
            f"{request.amount} {request.currency} is above the {CHARGE_LIMIT} limit per charge; "
            "split the order or pay with another provider",
        )


class CardLedger:
    """The charges taken and the refunds given, by charge id, kept in the unit's store."""

    def __init__(self, store: UnitStore) -> None:
        self.charges = store.table("charges", Charge)
        self.refunds = store.table("refunds", Refund)

    async def charge(self, request: ChargeRequest) -> Charge:
        _check_chargeable(request)
        charge = Charge(
            charge_id=_new_id("ch"),
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
                "unknown_charge", f"no charge {request.charge_id!r}; check the charge id"
            )
        earlier = self.refunds.get(charge.charge_id)
        if earlier is not None:
            return earlier
        refund = Refund(refund_id=_new_id("re"), charge_id=charge.charge_id, amount=charge.amount)
        if not dry_run():
            self.refunds.put(charge.charge_id, refund)
        return refund
