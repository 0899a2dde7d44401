"""A run cancelled mid-step (its partition went to another gateway) stops entirely: its
parallel steps stop sending and saving, so the next owner is the only one acting on it."""

from __future__ import annotations

import asyncio

from gateway.catalog import Catalog
from gateway.definition import JourneyDefinition
from gateway.engine import JourneyEngine
from gateway.models import JourneyRun
from gateway.transport import Outgoing
from mbs.contract import Contract
from mbs.kafka import Reply
from tests.engine_world import contract


class _Blocked:
    """Holds every request until released, then times out (as a dead provider does);
    records what was sent."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.sent: list[str] = []
        self.waiting = asyncio.Event()

    async def request(self, contract: Contract, outgoing: Outgoing, timeout_s: float) -> Reply:
        self.sent.append(outgoing.message_id)
        if len(self.sent) >= 2:
            self.waiting.set()
        await self.release.wait()
        raise TimeoutError


async def _cancelled_mid_step() -> tuple[list[str], int, int]:
    contracts = [contract(f"c{i}", f"c{i}.act", side_effects=True, price="0.01") for i in (1, 2, 3)]
    retry = {"attempts": 3, "backoff_ms": 0}
    definition = JourneyDefinition(
        name="parallel",
        version=1,
        steps=[
            {"id": "s1", "capability": "c1.act", "input": {}, "retry": retry},
            {"id": "s2", "capability": "c2.act", "input": {}, "retry": retry},
            {"id": "s3", "capability": "c3.act", "after": ["s1", "s2"], "input": {}},
        ],
    )
    transport = _Blocked()
    saves: list[int] = []

    async def save(run: JourneyRun) -> int:
        saves.append(run.revision)
        return 0

    engine = JourneyEngine(transport, Catalog(contracts), save, default_timeout_s=5)
    run = engine.new_run(definition, {})
    task = asyncio.create_task(engine.run(definition, run))
    await transport.waiting.wait()  # both parallel steps are waiting for their replies
    saved_before = len(saves)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    transport.release.set()  # the calls time out: an orphaned step would try again
    await asyncio.sleep(0.2)  # time for an orphan to act: the test proves none does
    return transport.sent, saved_before, len(saves)


def test_a_cancelled_run_leaves_no_step_running() -> None:
    sent, saved_before, saved_after = asyncio.run(_cancelled_mid_step())
    assert len(sent) == 2, sent  # no retry, and s3 never started
    assert saved_after == saved_before, "an orphaned step saved the run after it was cancelled"
