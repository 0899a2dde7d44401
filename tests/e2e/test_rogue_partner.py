"""A rogue partner on the real broker: FastShip's place in the ecosystem is taken by a
responder that answers every booking at once, on FastShip's own reply topic with the proper
correlation headers, but with a reply that breaks the contract (not JSON, a price that is no
number, a JSON array, an object of the wrong shape) or bills 999999 for a valid booking.

The platform must keep serving and decide every run at once, not at the journey's timeout:
a broken reply is FastShip's technical failure (`invalid_reply`): the run undoes its charge
and reservation, or fails over to the in-house carrier when its policy says so; whether the
rogue booked anything is unknown, so that call is settled and, failing that, parked. An
overpriced reply is billed at FastShip's contract price.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

import contracts
from gateway.definition import JOURNEYS_DIR
from mbs import wire as h
from mbs.kafka import Connection, ensure_topics
from tests.e2e.ecosystem import (
    ADMIN,
    CALLER,
    Ecosystem,
    Payments,
    order,
    payments_ledger,
    steps_of,
    stock,
    wait_all,
)

pytestmark = pytest.mark.kafka

FASTSHIP = next(
    c for c in contracts.partner_contracts("fastship") if c.capability == "shipping.book"
)
IN_HOUSE = ("pricing", "inventory", "payments", "fraud", "shipping", "notifications")
# What the rogue answers, by the kind of order (the part of its order id before the dot):
# a body (None: a valid booking) and headers that override proper ones.
BROKEN: dict[str, tuple[bytes | None, dict[str, str]]] = {
    "not-json": (b"<html><body>502 Bad Gateway</body></html>\xff", {}),
    "array": (b"[1,2,3]", {}),
    "unexpected": (b'{"unexpected": true}', {}),
}
PRICE_ABC = "price-abc"
OVERPRICED = "overpriced"
ANSWERS = {
    **BROKEN,
    PRICE_ABC: (None, {h.PRICE: "abc"}),
    OVERPRICED: (None, {h.PRICE: "999999"}),
}
JOURNEY_TIMEOUT_S = 20
SHIP_TIMEOUT_S = 5
TOLD_WITHIN_S = 2.0  # from the run's decision to the caller's answer
# A garbage answer settles nothing: MBS_UNDO_ATTEMPTS (6) re-asks, 0.2 s to 3.2 s apart.
SETTLED_WITHIN_S = 30
STOCK_SKU = "milk-jug-350ml"  # only the runs that must release their stock order it


def declared(*served: tuple[str, str]) -> Decimal:
    """The contracts' `price_per_call` of each (capability, unit) that served a call."""
    prices = {(c.capability, c.unit): c.pricing.price_per_call for c in contracts.all_contracts()}
    return sum((prices[call] for call in served), Decimal(0))


KEPT = [("pricing.quote", "pricing"), ("inventory.reserve", "inventory")]
KEPT += [("fraud.score", "fraud"), ("payments.charge", "payments")]
UNDONE = [("payments.refund", "payments"), ("inventory.release", "inventory")]
NOTIFIED = ("notifications.send", "notifications")


@dataclass
class Rogue:
    """Takes FastShip's requests and answers each at once with what `ANSWERS` says."""

    bootstrap: str
    answered: list[tuple[str, str]] = field(default_factory=list)  # (order id, message id)
    _consumer: AIOKafkaConsumer | None = None
    _producer: AIOKafkaProducer | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        topics = [FASTSHIP.request_topic, FASTSHIP.reply_topic]
        await ensure_topics(Connection(self.bootstrap), topics)
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=0)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, fetch_max_wait_ms=20
        )
        await self._producer.start()
        await self._consumer.start()
        topic = FASTSHIP.request_topic
        found = await self._producer.partitions_for(topic)  # asks the broker: all of them
        parts = [TopicPartition(topic, p) for p in sorted(found)]
        self._consumer.assign(parts)
        await self._consumer.seek_to_end(*parts)
        for tp in parts:  # positioned now: no request sent after this is missed
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._serve())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()

    async def _serve(self) -> None:
        assert self._consumer is not None
        assert self._producer is not None
        async for record in self._consumer:
            hdrs = {k: v.decode(errors="replace") for k, v in record.headers or ()}
            request = json.loads(record.value or b"{}")
            order_id = str(request.get("order_id", ""))
            body, overrides = ANSWERS.get(order_id.split(".", maxsplit=1)[0], (None, {}))
            self.answered.append((order_id, hdrs.get(h.MESSAGE_ID, "")))
            booking: dict[str, Any] = {"shipment_id": f"rogue-{uuid.uuid4().hex[:8]}"}
            booking["order_id"] = order_id
            booking |= {"carrier": "FastShip", "tracking_number": "FS-99999999", "eta_days": 1}
            out = {
                h.MESSAGE_ID: uuid.uuid4().hex,
                h.CORRELATION_ID: hdrs.get(h.CORRELATION_ID, ""),
                h.REQUEST_ID: hdrs.get(h.MESSAGE_ID, ""),
                h.UNIT: FASTSHIP.unit,
                h.COST: str(FASTSHIP.pricing.cost_per_call),
                h.PRICE: str(FASTSHIP.pricing.price_per_call),
                h.HANDLER_MS: "0.4",
                **{k: hdrs[k] for k in (h.JOURNEY_ID, h.JOURNEY, h.STEP, h.ATTEMPT) if k in hdrs},
                **overrides,
            }
            await self._producer.send_and_wait(
                FASTSHIP.reply_topic,
                json.dumps(booking).encode() if body is None else body,
                key=record.key,
                headers=[(k, v.encode()) for k, v in out.items()],
            )


def _journey(name: str, providers: dict[str, Any]) -> dict[str, Any]:
    """order-to-delivery with the ship step's providers set, under `name`."""
    definition: dict[str, Any] = yaml.safe_load(
        (JOURNEYS_DIR / "order-to-delivery.yaml").read_text()
    )
    definition["name"], definition["timeout"] = name, JOURNEY_TIMEOUT_S
    ship = next(s for s in definition["steps"] if s["id"] == "ship")
    ship["providers"], ship["timeout"] = providers, SHIP_TIMEOUT_S
    return definition


JOURNEYS: dict[str, dict[str, Any]] = {
    "rogue-fixed": {"policy": "fixed", "units": ["fastship"]},
    "rogue-failover": {"policy": "failover", "units": ["fastship", "shipping"], "failover": True},
    "in-house-ship": {"policy": "fixed", "units": ["shipping"]},
}


@pytest.fixture(scope="module")
def eco(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecosystem]:
    ecosystem = Ecosystem(kafka_bootstrap, tmp_path_factory.mktemp("rogue"))
    try:
        ecosystem.start_units(*IN_HOUSE)  # FastShip itself stays down: the rogue has its place
        url = ecosystem.start_gateway()
        for name, providers in JOURNEYS.items():
            body = json.dumps(_journey(name, providers))
            put = httpx.put(f"{url}/journeys/{name}", content=body, headers=ADMIN, timeout=30)
            assert put.status_code == 201, put.text
        yield ecosystem
    finally:
        ecosystem.stop()


@pytest.fixture
async def rogue(eco: Ecosystem) -> AsyncIterator[Rogue]:
    responder = Rogue(eco.bootstrap)
    try:
        await responder.start()
        yield responder
    finally:
        await responder.stop()


@pytest.fixture
async def client(eco: Ecosystem) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=eco.gateways["gateway"], timeout=90) as http:
        yield http


@dataclass
class Outcome:
    """A run as its synchronous POST answered it, how long that took, and its final state."""

    kind: str
    status_code: int
    seconds: float
    decided: dict[str, Any]
    final: dict[str, Any] = field(default_factory=dict)

    @property
    def order_id(self) -> str:
        return str(self.decided["input"]["order_id"])

    @property
    def ship(self) -> dict[str, Any]:
        return steps_of(self.final)["ship"]


async def _drive(client: httpx.AsyncClient, runs: list[tuple[str, str]]) -> list[Outcome]:
    """Start one order per (journey, kind) at once; each POST waits for its run's outcome, at
    most the journey's timeout. Then wait until every run is settled (nothing `unsettled`)
    and read each again: every run stays readable."""

    async def one(journey: str, kind: str) -> Outcome:
        body = order(0, sku=STOCK_SKU)
        body["order_id"] = f"{kind}.{uuid.uuid4().hex[:12]}"
        started = time.monotonic()
        try:
            response = await client.post(
                f"/journeys/{journey}", json=body, headers=CALLER, timeout=JOURNEY_TIMEOUT_S
            )
        except httpx.ReadTimeout:
            pytest.fail(f"{journey} {kind}: no outcome within the {JOURNEY_TIMEOUT_S}s timeout")
        return Outcome(kind, response.status_code, time.monotonic() - started, response.json())

    outcomes = await asyncio.gather(*(one(journey, kind) for journey, kind in runs))
    locations = [f"/journeys/{o.decided['journey']}/runs/{o.decided['run_id']}" for o in outcomes]
    finals = await wait_all(client, locations, SETTLED_WITHIN_S, settled=True)
    for outcome, location in zip(outcomes, locations, strict=True):
        outcome.final = finals[location]
        again = await client.get(location, headers=CALLER)
        assert again.status_code == 200, f"{outcome.kind}: run unreadable: {again.text[:300]}"
    return outcomes


def _decided_at_once(o: Outcome) -> None:
    """The POST answered with the outcome, not with 202 after the journey's timeout plus the
    gateway's wait margin; as soon as the run was decided, not once its side effects were
    settled; and the broken reply was acted on, not waited out: FastShip's calls were
    answered well inside the ship step's timeout. (Measured by the run's own clock: a burst
    of journeys on an ecosystem just started may take seconds before the ship step.)"""
    assert o.status_code != 202, f"{o.kind}: undecided after {o.seconds:.1f}s"
    decided_s = o.decided["latency_ms"] / 1000
    assert decided_s < JOURNEY_TIMEOUT_S, f"{o.kind}: decided after {decided_s:.1f}s"
    told_s = o.seconds - decided_s
    assert told_s < TOLD_WITHIN_S, f"{o.kind}: told {told_s:.1f}s after the run was decided"
    fastship = [c for c in steps_of(o.decided)["ship"]["calls"] if c["unit"] == FASTSHIP.unit]
    waited = [
        c["latency_ms"]
        for c in fastship
        if c["outcome"] == "timeout" or (c["latency_ms"] or 0) >= SHIP_TIMEOUT_S * 1e3
    ]
    assert fastship, f"{o.kind}: FastShip was not asked"
    assert not waited, f"{o.kind}: FastShip's broken replies were waited out: {waited} ms"


def _failed_and_undone(o: Outcome, payments: Payments, rogue: Rogue) -> None:
    """The ship step failed as FastShip's technical failure; the charge was refunded and the
    reservation released; the rogue's booking, done or not nobody knows, was parked."""
    _decided_at_once(o)
    assert o.status_code == 502, f"{o.kind}: a partner's failure is not the caller's"
    assert o.decided["status"] == "failed", o.decided
    assert (o.decided["error"]["step"], o.decided["error"]["code"]) == ("ship", "invalid_reply")
    [call] = o.ship["calls"]
    assert (call["unit"], call["outcome"], call["error"]) == ("fastship", "failed", "invalid_reply")
    assert Decimal(call["price"]) == 0, f"{o.kind}: a broken reply billed"
    steps = steps_of(o.final)
    for step, undo in (("pay", "payments.refund"), ("reserve", "inventory.release")):
        compensation = steps[step]["compensation"]
        assert compensation is not None, f"{o.kind}: {step} not undone"
        assert (compensation["capability"], compensation["outcome"]) == (undo, "ok")
    charges, refunded = payments
    [charge] = charges[o.order_id]
    assert charge in refunded, f"{o.kind}: the card was charged and never refunded"
    assert Decimal(o.final["bill"]["total_price"]) == declared(*KEPT, *UNDONE), o.kind
    # Asked again under the same message id, the rogue answered garbage again: whether it
    # booked stays unknown, so the call is parked for an operator, never assumed.
    assert call["effect"] == "unknown", o.kind
    parked = (o.final["status"], o.final["parked"])
    assert parked == ("compensation_failed", [call["message_id"]]), o.kind
    asked = [mid for order_id, mid in rogue.answered if order_id == o.order_id]
    assert asked.count(call["message_id"]) >= 2, f"{o.kind}: the booking was never settled"


def _failed_over(o: Outcome, payments: Payments) -> None:
    """FastShip's broken reply moved the step on to the in-house carrier; the sale stands."""
    _decided_at_once(o)
    assert (o.status_code, o.decided["status"]) == (200, "completed"), o.decided
    calls = [(c["unit"], c["outcome"], c["error"]) for c in o.ship["calls"]]
    assert calls == [("fastship", "failed", "invalid_reply"), ("shipping", "ok", None)]
    assert o.ship["unit"] == "shipping"
    assert o.final["output"]["tracking_number"].startswith("MBS"), o.kind
    served = [*KEPT, ("shipping.book", "shipping"), NOTIFIED]
    assert Decimal(o.final["bill"]["total_price"]) == declared(*served), o.kind
    charges, refunded = payments
    assert charges[o.order_id] == [o.final["output"]["charge_id"]]
    assert o.final["output"]["charge_id"] not in refunded, f"{o.kind}: the sale was undone"
    rogue_call = o.ship["calls"][0]
    parked = (o.final["status"], o.final["parked"])
    assert parked == ("compensation_failed", [rogue_call["message_id"]]), o.kind


async def _fastship_card(client: httpx.AsyncClient) -> dict[str, Any]:
    """FastShip's `shipping.book` row of its scorecard, as the gateway saw its calls."""
    card = await client.get("/units/fastship/scorecard", headers=CALLER)
    assert card.status_code == 200, card.text
    rows = [r for r in card.json()["capabilities"] if r["capability"] == "shipping.book"]
    return rows[0] if rows else {"calls": 0, "ok": 0, "failures": 0, "revenue": "0"}


async def _still_serving(client: httpx.AsyncClient) -> None:
    """A plain order on the in-house carrier completes; the gateway says it is healthy."""
    assert (await client.get("/healthz")).status_code == 200
    response = await client.post("/journeys/in-house-ship", json=order(1), headers=CALLER)
    run = response.json()
    assert run["status"] == "completed", run
    assert steps_of(run)["ship"]["unit"] == "shipping"


async def test_a_broken_reply_fails_the_step_or_fails_over(
    eco: Ecosystem, rogue: Rogue, client: httpx.AsyncClient
) -> None:
    """Without failover the run undoes its charge and stock; with it, the in-house carrier
    ships. Each broken reply counts against FastShip on its scorecard."""
    card_before, stock_before = await _fastship_card(client), stock(eco, STOCK_SKU)
    fixed = [("rogue-fixed", kind) for kind in BROKEN]
    failover = [("rogue-failover", kind) for kind in BROKEN]
    outcomes = await _drive(client, fixed + failover)
    payments = payments_ledger(eco)
    for o in outcomes[: len(fixed)]:
        _failed_and_undone(o, payments, rogue)
    for o in outcomes[len(fixed) :]:
        _failed_over(o, payments)
    kept = len(failover)  # the failed-over sales keep their stock
    assert stock(eco, STOCK_SKU) == stock_before - kept, "failed runs release their stock"
    card = await _fastship_card(client)
    assert card["failures"] - card_before["failures"] >= len(outcomes), card
    assert card["ok"] == card_before["ok"], card
    await _still_serving(client)


async def test_a_price_that_is_no_number_is_a_broken_reply(
    eco: Ecosystem, rogue: Rogue, client: httpx.AsyncClient
) -> None:
    outcomes = await _drive(client, [("rogue-fixed", PRICE_ABC), ("rogue-failover", PRICE_ABC)])
    payments = payments_ledger(eco)
    _failed_and_undone(outcomes[0], payments, rogue)
    _failed_over(outcomes[1], payments)
    await _still_serving(client)


async def test_an_overpriced_reply_is_billed_at_the_contract_price(
    eco: Ecosystem, rogue: Rogue, client: httpx.AsyncClient
) -> None:
    card_before = await _fastship_card(client)
    outcomes = await _drive(client, [("rogue-fixed", OVERPRICED)] * 2)
    price = FASTSHIP.pricing.price_per_call
    for o in outcomes:
        _decided_at_once(o)
        assert (o.status_code, o.final["status"]) == (200, "completed"), o.final
        [call] = o.ship["calls"]
        assert (call["unit"], call["outcome"]) == ("fastship", "ok")
        assert Decimal(call["price"]) == price
        assert "999999" in call["detail"], "the greedy header is noted on the call"
        lines = [s for s in o.final["bill"]["by_step"] if s["step"] == "ship"]
        assert [(s["unit"], Decimal(s["price"])) for s in lines] == [("fastship", price)]
        served = [*KEPT, ("shipping.book", "fastship"), NOTIFIED]
        assert Decimal(o.final["bill"]["total_price"]) == declared(*served)
    ledger = await client.get("/ledger", headers=ADMIN)
    assert ledger.status_code == 200, ledger.text
    assert "999999" not in ledger.text
    charged = [Decimal(line["charged"]) for line in ledger.json() if line["unit"] == "fastship"]
    assert all(amount % price == 0 for amount in charged), charged
    card = await _fastship_card(client)
    assert Decimal(card["revenue"]) - Decimal(card_before["revenue"]) == 2 * price, card
    await _still_serving(client)
