"""Unit processes on the real broker: restarts, SIGTERM under load, shadow, a non-Python client."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mbs import headers as h
from mbs.processes import Process, ProcessGroup
from tests.kafka_probe import Probe

pytestmark = pytest.mark.kafka
CHARGE = "payments.charge.v1"


def order(i: int = 0, card: str = "tok-4242") -> dict[str, object]:
    return {"order_id": f"o-{i}", "customer_id": "cust-1", "amount": "19.90", "card_token": card}


@pytest.fixture
def units(kafka_bootstrap: str, tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(
        tmp_path, env={"MBS_KAFKA_BOOTSTRAP": kafka_bootstrap, "MBS_UNIT_PORT": "0"}
    )
    try:
        yield group
    finally:
        group.stop()


def start_payments(group: ProcessGroup) -> Process:
    return group.start(f"payments-{len(group.children)}", "run", "unit", "payments")


async def stop(process: Process) -> None:
    """SIGTERM, then check the unit drained and shut down cleanly (uvicorn re-raises the
    signal after a graceful shutdown, so -SIGTERM is the clean exit status)."""
    process.popen.terminate()
    code = await asyncio.to_thread(process.popen.wait, 60)
    assert code in (0, -signal.SIGTERM), process.tail()
    assert "shut down gracefully" in process.tail(40)


async def test_redelivered_request_after_restart_is_answered_from_memory(
    kafka_bootstrap: str, units: ProcessGroup
) -> None:
    message_id = uuid.uuid4().hex
    async with Probe(kafka_bootstrap, "mbs.replies.payments") as probe:
        first_unit = start_payments(units)
        first = await probe.send(CHARGE, order(), message_id=message_id)
        await probe.wait_for([first], 60)
        await stop(first_unit)
        start_payments(units)
        again = await probe.send(CHARGE, order(), message_id=message_id)
        other = await probe.send(CHARGE, order())
        await probe.wait_for([again, other], 60)
    charge, _ = probe.first(first)
    assert probe.first(again)[0] == charge, "same charge id: the card was not charged twice"
    assert probe.first(other)[0]["charge_id"] != charge["charge_id"]


async def test_sigterm_under_load_loses_nothing_and_charges_once(
    kafka_bootstrap: str, units: ProcessGroup
) -> None:
    count = 1000
    async with Probe(kafka_bootstrap, "mbs.replies.payments") as probe:
        unit = start_payments(units)
        ids = [uuid.uuid4().hex for _ in range(count)]
        sent = [await probe.send(CHARGE, order(i), message_id=ids[i]) for i in range(count)]
        await probe.flush()
        while len(probe.replies) < count // 4:
            assert unit.alive(), unit.tail()
            await asyncio.sleep(0.01)
        answered_before = len(probe.replies)
        await stop(unit)
        start_payments(units)
        await probe.wait_for(sent, 120)
        await asyncio.sleep(1)  # let any late duplicate arrive before counting
    assert answered_before < count, "the unit must be stopped mid-way for this test to mean much"
    charges = {c: {json.loads(b)["charge_id"] for b, _ in probe.replies[c]} for c in sent}
    assert all(len(ids) == 1 for ids in charges.values()), "a request was charged twice"
    assert len({next(iter(ids)) for ids in charges.values()}) == count


async def test_shadow_request_is_a_dry_run(kafka_bootstrap: str, units: ProcessGroup) -> None:
    async with Probe(kafka_bootstrap, "mbs.replies.payments") as probe:
        start_payments(units)
        shadow = await probe.send(CHARGE, order(), **{h.SHADOW: "1"})
        await probe.wait_for([shadow], 60)
    body, hdrs = probe.first(shadow)
    assert body["charge_id"].startswith("dry-")
    assert hdrs[h.SHADOW] == "1"
    assert float(hdrs[h.PRICE]) == 0


async def test_request_from_kcat_gets_a_correct_reply(
    kafka_bootstrap: str, units: ProcessGroup
) -> None:
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.skip("kcat is not installed (CI installs it: apt-get install kcat)")
    correlation = uuid.uuid4().hex
    async with Probe(kafka_bootstrap, "mbs.replies.payments") as probe:
        start_payments(units)
        payload = json.dumps(order(7))
        await asyncio.to_thread(
            subprocess.run,
            [
                kcat,
                "-P",
                "-b",
                kafka_bootstrap,
                "-t",
                CHARGE,
                "-H",
                f"{h.MESSAGE_ID}={uuid.uuid4().hex}",
                "-H",
                f"{h.CORRELATION_ID}={correlation}",
            ],
            input=payload.encode(),
            check=True,
            timeout=30,
        )
        await probe.wait_for([correlation], 60)
    body, hdrs = probe.first(correlation)
    assert hdrs[h.UNIT] == "payments"
    assert body["order_id"] == "o-7"
    assert body["charge_id"].startswith("ch-")
