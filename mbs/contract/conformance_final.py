"""The conformance kit's checks of final answers: a unit's answer to a message id is final.

A request found after its `mbs-deadline` must be answered `deadline_exceeded` and never done;
that answer, like any final one, is remembered: a repeat of the message id with a fresh
deadline gets it again. A partner that forgets (restarted, it does the work on the repeat)
books what the gateway already failed over from: an orphan side effect nobody undoes. A served
request repeated gets the same answer, not the work twice. And every reply must come on the
partition its request named (`misrouted`).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mbs import wire as h
from mbs.kafka.rpc import Reply, Requester

if TYPE_CHECKING:
    from mbs.contract.conformance import CapabilityResult, Case
    from mbs.contract.model import Contract

DEADLINE_EXCEEDED = "deadline_exceeded"
PAST_MS = 60_000  # how long before now the kit's expired deadline lies


@dataclass(frozen=True)
class Violation:
    """One way a unit broke its contract: in which case, what was expected, what came back."""

    capability: str
    case: str
    expected: str
    got: str


def _said(reply: Reply) -> str:
    if reply.error is not None:
        return f"error {reply.error!r}: {reply.error_detail[:120]}"
    return f"a success reply {reply.body[:120]!r}"


def _same(first: Reply, again: Reply) -> bool:
    if first.error != again.error:
        return False
    try:
        return bool(json.loads(first.body) == json.loads(again.body))
    except ValueError:
        return first.body == again.body


def misrouted(reply: Reply) -> tuple[str, str] | None:
    """`(expected, got)` for a reply on another partition than its request named: with several
    gateway instances, none waiting for it would read it."""
    asked = reply.asked_partition
    if asked is None or reply.partition == asked:
        return None
    expected = f"the reply on partition {asked} of its reply topic ({h.REPLY_PARTITION})"
    return expected, f"the reply on partition {reply.partition}: the header was not honoured"


def _final(reply: Reply, message_id: str) -> str | None:
    """What is wrong with a final answer's headers, or None."""
    if reply.headers.get(h.REQUEST_ID) != message_id:
        return f"{h.REQUEST_ID} {reply.headers.get(h.REQUEST_ID)!r}, not the message id"
    return None


async def _ask(
    requester: Requester, contract: Contract, body: bytes, timeout_s: float, **headers: str
) -> Reply | str:
    try:
        return await requester.request(
            contract.request_topic, body, timeout_s=timeout_s, extra_headers=headers
        )
    except TimeoutError:
        return f"no reply within {timeout_s:g}s"


async def _late_then_repeated(
    requester: Requester, contract: Contract, body: bytes, timeout_s: float
) -> list[tuple[str, str, str | None]]:
    """(case, expected, problem or None) for an expired request and its fresh repeat."""
    message_id = f"mbs-conformance-late-{uuid.uuid4().hex}"
    past = str(int(time.time() * 1000) - PAST_MS)
    late = await _ask(
        requester, contract, body, timeout_s, **{h.MESSAGE_ID: message_id, h.DEADLINE: past}
    )
    case, expected = "final: a request past its mbs-deadline", f"mbs-error {DEADLINE_EXCEEDED!r}"
    if isinstance(late, str):
        return [(case, expected, late)]
    problem: str | None = None
    if late.error != DEADLINE_EXCEEDED:
        problem = f"{_said(late)}: work started after its deadline"
    elif late.price != 0:
        problem = f"{h.PRICE} {late.price} on an error"
    else:
        problem = _final(late, message_id)
    found = [(case, f"{expected}, {h.REQUEST_ID}, {h.PRICE} 0", problem)]
    again = await _ask(requester, contract, body, timeout_s, **{h.MESSAGE_ID: message_id})
    repeat = "final: the same message id again, with a fresh deadline"
    expected = f"the same final answer, {DEADLINE_EXCEEDED!r}: never the work (an orphan)"
    if isinstance(again, str):
        return [*found, (repeat, expected, again)]
    return [*found, (repeat, expected, None if again.error == DEADLINE_EXCEEDED else _said(again))]


async def _served_then_repeated(
    requester: Requester, contract: Contract, body: bytes, timeout_s: float
) -> list[tuple[str, str, str | None]]:
    message_id = f"mbs-conformance-repeat-{uuid.uuid4().hex}"
    case, expected = "final: a served request repeated", "the same answer, with mbs-request-id"
    first = await _ask(requester, contract, body, timeout_s, **{h.MESSAGE_ID: message_id})
    if isinstance(first, str):
        return [(case, expected, first)]
    again = await _ask(requester, contract, body, timeout_s, **{h.MESSAGE_ID: message_id})
    if isinstance(again, str):
        return [(case, expected, again)]
    problem = _final(first, message_id) or _final(again, message_id)
    if problem is None and not _same(first, again):
        problem = f"first {_said(first)}, then {_said(again)}"
    return [(case, expected, problem)]


async def check_final_answers(
    requester: Requester,
    contract: Contract,
    cases: list[Case],
    timeout_s: float,
    result: CapabilityResult,
) -> None:
    """Add the final-answer checks to `result` (skipped when nothing was served at all)."""
    valid = [case for case in cases if case.valid]
    if not valid or result.passed == 0:
        return
    found: list[Any] = await _late_then_repeated(requester, contract, valid[0].body, timeout_s)
    found += await _served_then_repeated(requester, contract, valid[0].body, timeout_s)
    for case, expected, problem in found:
        result.sent += 1
        if problem is None:
            result.passed += 1
        else:
            result.violations.append(Violation(contract.capability, case, expected, problem))
