"""The chaos run's invariant checker catches what it must: a planted double charge, a lost
refund, a stock leak, an unfinished run, a call billed off-contract; and passes a clean shop.

The evidence is built the way the platform builds it: the units' own handlers write their
SQLite files (`UnitStore`), and the journey records are the gateway's `JourneyRun` models
(bills by the gateway's own `bill`) serialised as the journey log holds them."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bench.invariants import check, evidence_from, violations
from bench.journey_log import JourneyLog
from contracts import all_contracts
from contracts.inventory import ReleaseRequest, ReserveRequest
from contracts.notifications import NotifyRequest
from contracts.payments import ChargeRequest, RefundRequest
from contracts.shipping import BookingRequest, CancelRequest
from gateway.calls import bill
from gateway.catalog import Catalog
from gateway.models import Call, JourneyRun, StepError, StepRun
from mbs import UnitStore
from services.inventory.handlers import OPENING_STOCK, Stock
from services.notifications.handlers import Outbox
from services.payments.handlers import CardLedger
from services.shipping.handlers import ShipmentBook

CATALOG = Catalog(all_contracts())
SKU = "grinder-c40"
ORDER_STEPS = (
    ("quote", "pricing.quote", "pricing"),
    ("reserve", "inventory.reserve", "inventory"),
    ("fraud", "fraud.score", "fraud"),
    ("pay", "payments.charge", "payments"),
    ("ship", "shipping.book", "shipping"),
    ("notify", "notifications.send", "notifications"),
)
UNDO = {"reserve": "inventory.release", "pay": "payments.refund", "ship": "shipping.cancel"}


def price(capability: str, unit: str) -> Decimal:
    contract = CATALOG.get(capability, unit)
    assert contract is not None
    return contract.pricing.price_per_call


def done(run: JourneyRun, step: StepRun, unit: str, reply: dict[str, Any] | None) -> Call:
    """A call answered ok, as the caller records it (side effects keep their reply)."""
    contract = CATALOG.get(step.capability, unit)
    assert contract is not None
    call = Call(
        unit=unit,
        capability=step.capability,
        message_id=f"{run.run_id}:{step.id}:{unit}:{len(step.calls) + 1}",
        outcome="ok",
        effect="done" if contract.side_effects else "none",
        output=reply if contract.side_effects else None,
        price=price(step.capability, unit),
        used=True,
    )
    step.calls.append(call)
    step.status, step.output, step.unit = "ok", reply or {}, unit
    return call


def undone(run: JourneyRun, step: StepRun, call: Call) -> None:
    """The log's account of an undo that was answered ok."""
    capability = UNDO[step.id]
    call.undos.append(
        Call(
            unit=call.unit,
            capability=capability,
            message_id=f"{call.message_id}:undo:1",
            outcome="ok",
            price=price(capability, call.unit),
        )
    )
    call.effect = "undone"


class Shop:
    """The units' books in a state dir, and the journey records of what happened to them."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.stores = [
            UnitStore.open(state_dir / f"{unit}.sqlite3")
            for unit in ("payments", "inventory", "shipping", "notifications")
        ]
        payments, inventory, shipping, notifications = self.stores
        self.ledger, self.stock = CardLedger(payments), Stock(inventory)
        self.parcels, self.outbox = ShipmentBook(shipping), Outbox(notifications)
        self.runs: dict[str, JourneyRun] = {}

    def close(self) -> None:
        for store in self.stores:
            store.close()

    def new_run(self, journey: str, body: dict[str, Any], steps: Any) -> JourneyRun:
        run = JourneyRun(
            run_id=uuid.uuid4().hex,
            journey=journey,
            version=1,
            input=body,
            created_ms=1,
            deadline_ms=30_001,
            steps=[StepRun(id=s, capability=c) for s, c, _ in steps],
        )
        self.runs[run.run_id] = run
        return run

    def finish(self, run: JourneyRun, error: StepError | None = None) -> JourneyRun:
        run.error, run.status = error, "completed" if error is None else "failed"
        run.compensated = error is not None
        run.bill = bill(run, CATALOG)
        return run

    async def order(self, fail_at: str | None = None, *, refund: bool = True) -> JourneyRun:
        """An order-to-delivery run, done for real on the units' books; `fail_at` a step
        whose business error fails the run, the earlier effects undone (unless told not to
        refund: the planted lost refund)."""
        order_id = f"o-{uuid.uuid4().hex[:6]}"
        run = self.new_run(
            "order-to-delivery", {"order_id": order_id, "card_token": "***"}, ORDER_STEPS
        )
        steps = {s.id: s for s in run.steps}
        made: list[tuple[StepRun, Call]] = []
        for step_id, _, unit in ORDER_STEPS:
            step = steps[step_id]
            if step_id == fail_at:
                step.status = "business_error"
                for earlier, call in reversed(made):
                    if call.effect == "done":
                        await self.undo(earlier.id, call, refund=refund)
                        undone(run, earlier, call)
                return self.finish(run, StepError(step=step_id, code="planted"))
            reply = await self.serve(step_id, order_id)
            made.append((step, done(run, step, unit, reply)))
        return self.finish(run)

    async def serve(self, step_id: str, order_id: str) -> dict[str, Any]:
        if step_id == "reserve":
            reply: Any = await self.stock.reserve(
                ReserveRequest(order_id=order_id, sku=SKU, quantity=1)
            )
        elif step_id == "pay":
            reply = await self.ledger.charge(self.charge_request(order_id))
        elif step_id == "ship":
            reply = await self.parcels.book(
                BookingRequest(order_id=order_id, sku=SKU, quantity=1, postcode="10115")
            )
        elif step_id == "notify":
            reply = await self.outbox.send(
                NotifyRequest(customer_id="c-1", template="order_shipped", order_id=order_id)
            )
        else:
            return {"total": "249.00"}
        return dict(reply.model_dump(mode="json"))

    @staticmethod
    def charge_request(order_id: str) -> ChargeRequest:
        return ChargeRequest(
            order_id=order_id, customer_id="c-1", amount=Decimal("249.00"), card_token="tok-4242"
        )

    async def undo(self, step_id: str, call: Call, *, refund: bool = True) -> None:
        assert call.output is not None
        if step_id == "reserve":
            await self.stock.release(ReleaseRequest(reservation_id=call.output["reservation_id"]))
        elif step_id == "pay" and refund:
            await self.ledger.refund(RefundRequest(charge_id=call.output["charge_id"]))
        elif step_id == "ship":
            await self.parcels.cancel(CancelRequest(shipment_id=call.output["shipment_id"]))

    async def give_back(self, order: JourneyRun) -> JourneyRun:
        """A return-and-refund of a completed order: refund and release, then notify."""
        steps = (
            ("refund", "payments.refund", "payments"),
            ("restock", "inventory.release", "inventory"),
        )
        run = self.new_run("return-and-refund", {"order_id": order.input["order_id"]}, steps)
        paid = {s.id: s.output or {} for s in order.steps}
        refund = await self.ledger.refund(RefundRequest(charge_id=paid["pay"]["charge_id"]))
        release = await self.stock.release(
            ReleaseRequest(reservation_id=paid["reserve"]["reservation_id"])
        )
        done(run, run.steps[0], "payments", refund.model_dump(mode="json"))
        done(run, run.steps[1], "inventory", release.model_dump(mode="json"))
        return self.finish(run)

    def verdict(self, accepted: list[str] | None = None) -> dict[str, list[str]]:
        """Each invariant's violations, from the records as the journey log holds them."""
        logged = {k: json.loads(r.model_dump_json()) for k, r in self.runs.items()}
        chosen = list(self.runs) if accepted is None else accepted
        findings = check(evidence_from(logged, self.state_dir, chosen, dict(OPENING_STOCK)))
        assert all(f.checked > 0 for f in findings), findings
        return {f.invariant: f.violations for f in findings if f.violations}


@pytest.fixture
async def shop(tmp_path: Path) -> AsyncIterator[Shop]:
    """A shop with one completed order, one compensated, one returned: all promises kept."""
    made = Shop(tmp_path)
    await made.order()
    await made.order(fail_at="notify")
    await made.give_back(await made.order())
    yield made
    made.close()


async def test_a_shop_that_kept_its_promises_has_no_violations(shop: Shop) -> None:
    await shop.order(fail_at="reserve")
    assert shop.verdict() == {}


async def test_a_planted_double_charge_is_caught(shop: Shop) -> None:
    order = await shop.order()
    await shop.ledger.charge(shop.charge_request(order.input["order_id"]))  # nobody's record
    found = shop.verdict()
    assert len(found["no order charged twice"]) == 1
    assert order.input["order_id"] in found["no order charged twice"][0]
    assert "live charges belong to completed runs" in found


async def test_a_planted_lost_refund_is_caught(shop: Shop) -> None:
    failed = await shop.order(fail_at="ship", refund=False)  # the log says undone; it is not
    found = shop.verdict()
    charge = next(s.output for s in failed.steps if s.id == "pay")
    assert charge is not None
    assert any(charge["charge_id"] in v for v in found["live charges belong to completed runs"])
    assert any(failed.run_id in v for v in found["failed runs compensated"])
    assert any("not refunded" in v for v in found["log and unit books agree"])
    assert "no order charged twice" not in found


async def test_a_planted_stock_leak_is_caught(shop: Shop) -> None:
    run = await shop.order(fail_at="fraud")  # fraud after reserve: released, all well
    assert shop.verdict() == {}
    leaked = await shop.stock.reserve(ReserveRequest(order_id="o-ghost", sku=SKU, quantity=2))
    found = shop.verdict()
    [line] = found["stock conserved per SKU"]
    assert SKU in line
    assert leaked.reservation_id in line
    assert run.status == "failed"


async def test_an_unfinished_run_and_an_off_contract_price_are_caught(shop: Shop) -> None:
    order = await shop.order()
    order.steps[0].calls[0].price = Decimal("1.00")  # billed what the contract does not say
    order.bill = bill(order, CATALOG)
    missing = uuid.uuid4().hex
    found = shop.verdict(accepted=[*shop.runs, missing])
    assert any(missing in v for v in found["runs finished (decided, settled)"])
    assert len(found["bills match contract prices"]) == 2  # the call, and the bill's total
    order.status = "running"
    assert any(order.run_id in v for v in shop.verdict()["runs finished (decided, settled)"])


async def test_a_stale_state_written_after_the_final_one_is_caught(shop: Shop) -> None:
    """Two executions of one run at once: the slower one's older state lands last."""
    order = await shop.order()
    order.revision = 12
    stale = order.model_copy(deep=True, update={"status": "running", "revision": 9})
    log = JourneyLog()
    for offset, run in enumerate([*shop.runs.values(), stale]):
        log.add(run.run_id, run.model_dump_json().encode(), f"0@{offset}")
    evidence = evidence_from(
        log.runs, shop.state_dir, list(shop.runs), dict(OPENING_STOCK), [], log.regressions
    )
    found = {f.invariant: f.violations for f in check(evidence) if f.violations}
    [regression] = found["journey log moves forward"]
    assert f"run {order.run_id}: revision 9 (running)" in regression
    assert any(order.run_id in v for v in found["runs finished (decided, settled)"])


async def test_violations_are_counted_per_line(shop: Shop) -> None:
    await shop.ledger.charge(shop.charge_request("o-nobody"))
    logged = {k: json.loads(r.model_dump_json()) for k, r in shop.runs.items()}
    findings = check(evidence_from(logged, shop.state_dir, [], dict(OPENING_STOCK)))
    assert violations(findings) == 1
