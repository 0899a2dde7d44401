"""Customer notifications: known templates only, never to customers who opted out."""

from __future__ import annotations

import uuid

from pydantic import BaseModel

from contracts.notifications import Notification, NotifyRequest
from mbs import BusinessError, UnitStore, dry_run

TEMPLATES: dict[str, str] = {
    "order_confirmed": "Thank you! Your order {order_id} is confirmed.",
    "order_shipped": "Your order {order_id} is on its way, tracking {tracking_number}.",
    "refund_issued": "We refunded your order {order_id}.",
}
OPTED_OUT: frozenset[str] = frozenset({"cust-optout"})


class SentMessage(BaseModel, frozen=True):
    """One message as it left the outbox."""

    notification_id: str
    request: NotifyRequest
    text: str


def _new_id() -> str:
    real = f"ntf-{uuid.uuid4().hex[:12]}"
    return f"dry-{real}" if dry_run() else real


def _render(request: NotifyRequest) -> str:
    try:
        template = TEMPLATES[request.template]
    except KeyError:
        known = ", ".join(sorted(TEMPLATES))
        raise BusinessError(
            "unknown_template", f"no template {request.template!r}; use one of: {known}"
        ) from None
    return template.format(
        order_id=request.order_id, tracking_number=request.tracking_number or "to follow"
    )


class Outbox:
    """The messages sent (kept in the unit's store), and the customers who asked to hear
    nothing."""

    def __init__(self, store: UnitStore, opted_out: frozenset[str] = OPTED_OUT) -> None:
        self.opted_out = opted_out
        self.sent = store.table("sent", SentMessage)

    async def send(self, request: NotifyRequest) -> Notification:
        text = _render(request)
        if request.customer_id in self.opted_out:
            raise BusinessError(
                "opted_out", f"customer {request.customer_id!r} opted out of notifications"
            )
        notification = Notification(notification_id=_new_id(), channel=request.channel)
        if not dry_run():
            sent = SentMessage(
                notification_id=notification.notification_id, request=request, text=text
            )
            self.sent.put(sent.notification_id, sent)
        return notification
