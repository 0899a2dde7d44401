"""The kit's final-answer checks (issue 15, item 3): a unit that does the work after its
deadline, or forgets its answer and does it on a repeat, is not certified; one that keeps
the rule is."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from mbs import wire as h
from mbs.contract import conformance
from mbs.contract.conformance import CapabilityResult, Case
from mbs.contract.conformance_final import check_final_answers
from mbs.kafka import Reply
from services.partners.fastship.app import BOOK

CONTRACT = BOOK.as_contract()
VALID = Case(
    "valid sample #1",
    json.dumps({"order_id": "o-1", "sku": "s", "quantity": 1, "postcode": "10115"}).encode(),
    True,
)


@dataclass
class FakeUnit:
    """Answers like a unit would, with one of the faults partners made."""

    remembers: bool = True
    honours_deadline: bool = True
    says_request_id: bool = True
    bookings: int = 0
    memory: dict[str, Reply] = field(default_factory=dict)

    async def request(
        self, topic: str, payload: bytes, *, timeout_s: float, extra_headers: dict[str, str]
    ) -> Reply:
        message_id = extra_headers[h.MESSAGE_ID]
        deadline = int(extra_headers.get(h.DEADLINE, str(int(time.time() * 1000) + 5000)))
        if self.remembers and message_id in self.memory:
            return self.memory[message_id]
        headers = {h.CORRELATION_ID: uuid.uuid4().hex, h.COST: "3.90", h.PRICE: "0"}
        if self.says_request_id:
            headers[h.REQUEST_ID] = message_id
        if self.honours_deadline and deadline < time.time() * 1000:
            reply = Reply(b"{}", {**headers, h.ERROR: "deadline_exceeded"}, 1.0)
        else:
            self.bookings += 1
            body = {"shipment_id": f"fs-{self.bookings}", "order_id": "o-1"}
            reply = Reply(json.dumps(body).encode(), {**headers, h.PRICE: "3.90"}, 1.0)
        self.memory[message_id] = reply
        return reply


def checked(unit: FakeUnit) -> CapabilityResult:
    result = CapabilityResult(CONTRACT.capability, CONTRACT.version, 150, sent=1, passed=1)
    requester: Any = unit
    asyncio.run(check_final_answers(requester, CONTRACT, [VALID], 5.0, result))
    return result


def test_a_unit_that_keeps_the_rule_passes() -> None:
    unit = FakeUnit()
    result = checked(unit)
    assert result.violations == []
    assert (result.sent, result.passed) == (4, 4)
    assert unit.bookings == 1, "only the served request was done, once"


@pytest.mark.parametrize(
    ("unit", "case", "got"),
    [
        (FakeUnit(honours_deadline=False), "past its mbs-deadline", "work started after"),
        (FakeUnit(remembers=False), "fresh deadline", "a success reply"),
        (FakeUnit(remembers=False), "served request repeated", "first a success reply"),
        (FakeUnit(says_request_id=False), "past its mbs-deadline", h.REQUEST_ID),
    ],
)
def test_a_unit_that_breaks_it_is_not_certified(unit: FakeUnit, case: str, got: str) -> None:
    violations = checked(unit).violations
    assert any(case in v.case and got in v.got for v in violations), violations


def test_nothing_is_checked_when_nothing_was_served() -> None:
    result = CapabilityResult(CONTRACT.capability, CONTRACT.version, 150, sent=1, passed=0)
    requester: Any = FakeUnit()
    asyncio.run(check_final_answers(requester, CONTRACT, [VALID], 5.0, result))
    assert result.sent == 1


def test_the_kit_exports_violation_where_it_always_was() -> None:
    assert conformance.Violation.__name__ == "Violation"
