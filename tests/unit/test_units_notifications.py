"""The notifications unit's outbox: known templates, opted-out customers, dry runs unsent."""

from __future__ import annotations

import pytest

from contracts.notifications import SEND, NotifyRequest
from mbs import BusinessError, UnitStore
from mbs.testing import shadow_request
from services.notifications.handlers import Outbox


def new_outbox() -> Outbox:
    return Outbox(UnitStore.temporary())


def message(template: str = "order_confirmed", customer: str = "cust-1") -> NotifyRequest:
    return NotifyRequest(customer_id=customer, template=template, order_id="A-1")


@pytest.mark.parametrize("template", ["order_confirmed", "order_shipped", "refund_issued"])
async def test_each_template_is_sent_and_kept_in_the_outbox(template: str) -> None:
    outbox = new_outbox()
    sent = await outbox.send(message(template))
    assert sent.notification_id.startswith("ntf-")
    assert sent.channel == "email"
    assert [m.notification_id for m in outbox.sent.values()] == [sent.notification_id]
    assert "A-1" in outbox.sent.values()[0].text


async def test_shipped_message_carries_the_tracking_number() -> None:
    outbox = new_outbox()
    request = NotifyRequest(
        customer_id="cust-1",
        channel="sms",
        template="order_shipped",
        order_id="A-1",
        tracking_number="MBS0000000001",
    )
    assert (await outbox.send(request)).channel == "sms"
    assert "MBS0000000001" in outbox.sent.values()[0].text


async def test_unknown_template_is_refused() -> None:
    outbox = new_outbox()
    with pytest.raises(BusinessError) as err:
        await outbox.send(message("birthday_wishes"))
    assert err.value.code == "unknown_template"
    assert SEND.declares(err.value.code)
    assert outbox.sent.values() == []


async def test_opted_out_customer_gets_nothing() -> None:
    outbox = new_outbox()
    with pytest.raises(BusinessError) as err:
        await outbox.send(message(customer="cust-optout"))
    assert err.value.code == "opted_out"
    assert SEND.declares(err.value.code)
    assert outbox.sent.values() == []


async def test_dry_run_sends_nothing() -> None:
    outbox = new_outbox()
    with shadow_request():
        shadow = await outbox.send(message())
    assert shadow.notification_id.startswith("dry-ntf-")
    assert outbox.sent.values() == []
