"""What a unit says a call cost and earned, to the nanosecond and the last decimal.

A call's cost is the contract's `cost_per_call` plus the CPU seconds the handler measured
times `cost_per_cpu_second`; its price is the contract's `price_per_call` (README,
Telemetry). With the real CPU clock a test cannot know the CPU part, so a formula that
ignored CPU would pass; here the unit runs on a CPU clock the test controls, and the handler
advances it by a known amount. Business errors and dry runs earn nothing (`UnitMeter.price`)
and cost what they used; the reply header and the unit's meter say the same amount.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, KafkaMessage, TestKafkaBroker

from contracts.pricing import QUOTE, Quote, QuoteRequest
from mbs import BusinessError, Pricing, implement
from mbs import wire as h
from mbs.contract import Contract
from mbs.telemetry.meter import UnitMeter
from mbs.unit import Binding, RetryPolicy, UnitStore
from mbs.unit.server import Server

# Rates with digits a float or a 6-decimal header would lose.
PRICING = Pricing(
    price_per_call=Decimal("0.0213"),
    cost_per_call=Decimal("0.0005"),
    cost_per_cpu_second=Decimal("0.0137"),
)
# CPU the handler spends (ns) and the cost worked out by hand: 0.0005 + seconds * 0.0137.
SPENT = [
    (0, "0.0005"),
    (7, "0.0005000000959"),  # 7 ns: rounded to micro-anything, the CPU part vanishes
    (250_000_000, "0.003925"),
    (1_234_567_891, "0.0174135801067"),
    (3_000_000_000_000, "41.1005"),  # 50 minutes of CPU
]


@dataclass
class CpuClock:
    """CPU nanoseconds that move only when the test says so."""

    ns: int = 5_000_000_000

    def __call__(self) -> int:
        return self.ns


@dataclass
class Burner:
    """A handler that spends `cpu_ns` of CPU on the controlled clock, then quotes or refuses."""

    clock: CpuClock
    cpu_ns: int = 0
    refuse: bool = False

    async def quote(self, request: QuoteRequest) -> Quote:
        self.clock.ns += self.cpu_ns
        if self.refuse:
            raise BusinessError("unknown_sku", "catalogue being updated")
        return Quote(
            sku=request.sku,
            quantity=request.quantity,
            unit_price=Decimal("24.90"),
            total=Decimal("24.90") * request.quantity,
            currency="EUR",
        )


class RecordingMeter(UnitMeter):
    """The unit's meter, remembering what it was told each answer cost and earned."""

    def __init__(self, unit: str, contract: Contract) -> None:
        super().__init__(unit, contract)
        self.told: list[dict[str, Any]] = []

    def answered(self, outcome: str, **facts: Any) -> None:
        self.told.append({"outcome": outcome, **facts})
        super().answered(outcome, **facts)


@dataclass
class Served:
    """One unit on an in-memory broker, its CPU clock and its replies."""

    broker: KafkaBroker
    server: Server
    burner: Burner
    meter: RecordingMeter
    replies: asyncio.Queue[dict[str, str]] = field(default_factory=asyncio.Queue)

    async def ask(self, **headers: str) -> dict[str, str]:
        hdrs = {h.MESSAGE_ID: uuid.uuid4().hex, h.CORRELATION_ID: uuid.uuid4().hex, **headers}
        body = json.dumps({"sku": "espresso-beans-1kg", "quantity": 2}).encode()
        await self.broker.publish(body, self.server.contract.request_topic, headers=hdrs)
        reply = await asyncio.wait_for(self.replies.get(), 10)
        assert reply[h.CORRELATION_ID] == hdrs[h.CORRELATION_ID]
        return reply


@pytest.fixture
async def served(uid: str) -> AsyncIterator[Served]:
    renamed = QUOTE.model_copy(
        update={
            "unit": f"t{uid}",
            "capability": f"t{uid}.quote",
            "pricing": PRICING,
            "supports_dry_run": True,
        }
    )
    contract = implement(renamed, request=QuoteRequest, reply=Quote)
    broker, clock = KafkaBroker(), CpuClock()
    burner = Burner(clock)
    binding = Binding(contract, burner.quote)
    store = UnitStore.temporary()
    server = Server(contract.unit, binding, RetryPolicy(1), broker, store, cpu_clock=clock)
    meter = server.meter = RecordingMeter(contract.unit, contract)
    unit = Served(broker, server, burner, meter)
    group = f"mbs.unit.{contract.unit}"
    broker.subscriber(contract.request_topic, group_id=group, auto_offset_reset="earliest")(
        server.on_message
    )

    async def on_reply(msg: KafkaMessage) -> None:
        await unit.replies.put({k: v for k, v in msg.headers.items() if isinstance(v, str)})

    broker.subscriber(contract.reply_topic, group_id=f"test-{uid}", auto_offset_reset="earliest")(
        on_reply
    )
    async with TestKafkaBroker(broker):
        yield unit
    store.close()


def _formula(cpu_ns: int) -> Decimal:
    return PRICING.cost_per_call + Decimal(cpu_ns) / 1_000_000_000 * PRICING.cost_per_cpu_second


@pytest.mark.parametrize(("cpu_ns", "by_hand"), SPENT)
async def test_a_call_costs_its_call_plus_its_cpu_and_earns_the_contract_price(
    served: Served, cpu_ns: int, by_hand: str
) -> None:
    served.burner.cpu_ns = cpu_ns
    reply = await served.ask()
    assert h.ERROR not in reply
    assert Decimal(reply[h.COST]) == _formula(cpu_ns) == Decimal(by_hand)
    assert Decimal(reply[h.PRICE]) == PRICING.price_per_call
    told = served.meter.told[-1]
    assert (told["outcome"], told["shadow"]) == ("ok", False)
    assert (told["cost"], told["price"]) == (Decimal(by_hand), PRICING.price_per_call), (
        "the unit's own metrics count what the reply says"
    )


async def test_cpu_spent_between_calls_is_no_calls_cost(served: Served) -> None:
    served.burner.cpu_ns = 40_000_000
    first = await served.ask()
    served.burner.clock.ns += 9_000_000_000  # other work of the process, between requests
    second = await served.ask()
    assert Decimal(first[h.COST]) == Decimal(second[h.COST]) == _formula(40_000_000)


async def test_a_business_error_costs_its_cpu_and_earns_nothing(served: Served) -> None:
    served.burner.cpu_ns, served.burner.refuse = 1_234_567_891, True
    reply = await served.ask()
    assert reply[h.ERROR] == "unknown_sku"
    assert Decimal(reply[h.COST]) == Decimal("0.0174135801067")
    assert Decimal(reply[h.PRICE]) == 0
    told = served.meter.told[-1]
    assert (told["outcome"], told["cost"], told["price"]) == (
        "business_error",
        Decimal("0.0174135801067"),
        0,
    )


async def test_a_dry_run_costs_its_cpu_and_earns_nothing(served: Served) -> None:
    """The meter keeps a dry run's cost out of the unit's cost total (`shadow=True`): it is
    the candidate's cost of winning business, not a call anyone pays for."""
    served.burner.cpu_ns = 250_000_000
    reply = await served.ask(**{h.SHADOW: "1"})
    assert h.ERROR not in reply
    assert Decimal(reply[h.COST]) == Decimal("0.003925")
    assert Decimal(reply[h.PRICE]) == 0
    told = served.meter.told[-1]
    assert (told["outcome"], told["shadow"], told["cost"], told["price"]) == (
        "shadow",
        True,
        Decimal("0.003925"),
        0,
    )


async def test_a_request_never_started_costs_the_call_alone(served: Served) -> None:
    served.burner.cpu_ns = 1_000_000_000
    past = str(int(time.time() * 1000) - 1000)
    reply = await served.ask(**{h.DEADLINE: past})
    assert reply[h.ERROR] == "deadline_exceeded"
    assert (Decimal(reply[h.COST]), Decimal(reply[h.PRICE])) == (PRICING.cost_per_call, Decimal(0))


def test_a_unit_measures_the_processs_cpu_time_unless_told_otherwise() -> None:
    contract = implement(QUOTE, request=QuoteRequest, reply=Quote)
    store = UnitStore.temporary()
    server = Server(
        "pricing", Binding(contract, Burner(CpuClock()).quote), RetryPolicy(), KafkaBroker(), store
    )
    assert server.cpu_clock is time.process_time_ns
    store.close()
