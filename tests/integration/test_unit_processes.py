"""Unit processes on the real broker: restarts and crashes, SIGTERM under load, several
instances sharing a unit's state, shadow, a non-Python client."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from contracts import inventory, payments
from mbs import Contract, UnitStore
from mbs import wire as h
from mbs.kafka import Connection, ensure_topics
from mbs.testing import Process, ProcessGroup
from tests.conftest import require_tool
from tests.kafka_probe import Probe

pytestmark = pytest.mark.kafka


def order(i: int = 0, card: str = "tok-4242") -> dict[str, object]:
    return {"order_id": f"o-{i}", "customer_id": "cust-1", "amount": "19.90", "card_token": card}


@pytest.fixture
def units(kafka_bootstrap: str, tmp_path: Path, uid: str) -> Iterator[ProcessGroup]:
    """Unit processes sharing one state directory, as the instances of a unit on a host do.
    Each test runs its units under its own name (see tests/aliased_unit.py): topics, consumer
    groups and registry of its own, so no test answers, or is answered by, another's unit."""
    group = ProcessGroup(
        tmp_path,
        env={
            "MBS_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "MBS_UNIT_PORT": "0",
            "MBS_UNIT_STATE_DIR": str(tmp_path / "units"),
            "MBS_CONTRACTS_TOPIC": f"test.contracts.{uid}",
        },
    )
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture
def alias(uid: str) -> str:
    """The name this test's units run under."""
    return f"t{uid}"


def start_instance(group: ProcessGroup, unit: str, alias: str) -> Process:
    name = f"{alias}-{uuid.uuid4().hex[:6]}"
    return group.start(name, unit, alias, module="tests.aliased_unit")


def start_payments(group: ProcessGroup, alias: str) -> Process:
    return start_instance(group, "payments", alias)


async def stop(process: Process) -> None:
    """SIGTERM, then check the unit drained and shut down cleanly (uvicorn re-raises the
    signal after a graceful shutdown, so -SIGTERM is the clean exit status)."""
    process.popen.terminate()
    code = await asyncio.to_thread(process.popen.wait, 60)
    assert code in (0, -signal.SIGTERM), process.tail()
    assert "shut down gracefully" in process.tail(40)


async def test_redelivered_request_after_restart_is_answered_from_memory(
    kafka_bootstrap: str, units: ProcessGroup, alias: str
) -> None:
    message_id, charge_topic = uuid.uuid4().hex, topic_of(payments.CHARGE, alias)
    async with Probe(kafka_bootstrap, f"mbs.replies.{alias}") as probe:
        first_unit = start_payments(units, alias)
        first = await probe.send(charge_topic, order(), message_id=message_id)
        await probe.wait_for([first], 60)
        await stop(first_unit)
        start_payments(units, alias)
        again = await probe.send(charge_topic, order(), message_id=message_id)
        other = await probe.send(charge_topic, order())
        await probe.wait_for([again, other], 60)
    charge, _ = probe.first(first)
    assert probe.first(again)[0] == charge, "same charge id: the card was not charged twice"
    assert probe.first(other)[0]["charge_id"] != charge["charge_id"]


async def test_sigterm_under_load_loses_nothing_and_charges_once(
    kafka_bootstrap: str, units: ProcessGroup, alias: str
) -> None:
    count, charge_topic = 1000, topic_of(payments.CHARGE, alias)
    async with Probe(kafka_bootstrap, f"mbs.replies.{alias}") as probe:
        unit = start_payments(units, alias)
        ids = [uuid.uuid4().hex for _ in range(count)]
        sent = [await probe.send(charge_topic, order(i), message_id=ids[i]) for i in range(count)]
        await probe.flush()
        while len(probe.replies) < count // 4:
            assert unit.alive(), unit.tail()
            await asyncio.sleep(0.01)
        answered_before = len(probe.replies)
        await stop(unit)
        start_payments(units, alias)
        await probe.wait_for(sent, 120)
        await asyncio.sleep(1)  # let any late duplicate arrive before counting
    assert answered_before < count, "the unit must be stopped mid-way for this test to mean much"
    charges = {c: {json.loads(b)["charge_id"] for b, _ in probe.replies[c]} for c in sent}
    assert all(len(ids) == 1 for ids in charges.values()), "a request was charged twice"
    assert len({next(iter(ids)) for ids in charges.values()}) == count


async def test_shadow_request_is_a_dry_run(
    kafka_bootstrap: str, units: ProcessGroup, alias: str
) -> None:
    async with Probe(kafka_bootstrap, f"mbs.replies.{alias}") as probe:
        start_payments(units, alias)
        shadow = await probe.send(topic_of(payments.CHARGE, alias), order(), **{h.SHADOW: "1"})
        await probe.wait_for([shadow], 60)
    body, hdrs = probe.first(shadow)
    assert body["charge_id"].startswith("dry-")
    assert hdrs[h.SHADOW] == "1"
    assert float(hdrs[h.PRICE]) == 0


async def test_request_from_kcat_gets_a_correct_reply(
    kafka_bootstrap: str, units: ProcessGroup, alias: str
) -> None:
    kcat = require_tool("kcat", "apt-get install kcat")
    correlation = uuid.uuid4().hex
    async with Probe(kafka_bootstrap, f"mbs.replies.{alias}") as probe:
        start_payments(units, alias)
        payload = json.dumps(order(7))
        await asyncio.to_thread(
            subprocess.run,
            [
                kcat,
                "-P",
                "-b",
                kafka_bootstrap,
                "-t",
                topic_of(payments.CHARGE, alias),
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
    assert hdrs[h.UNIT] == alias
    assert body["order_id"] == "o-7"
    assert body["charge_id"].startswith("ch-")


# --- state and memory shared by the instances of a unit -------------------------------------


def topic_of(contract: Contract, alias: str) -> str:
    return contract.model_copy(update={"unit": alias}).request_topic


def store_of(tmp_path: Path, alias: str) -> UnitStore:
    return UnitStore.open(tmp_path / "units" / f"{alias}.sqlite3")


PARTITIONS = 6


async def members_at_least(
    bootstrap: str, group_id: str, count: int, timeout_s: float = 60
) -> None:
    """Until the consumer group is stable with `count` members (each with its partitions)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    while True:
        futures = admin.describe_consumer_groups([group_id], request_timeout=10)
        group = await asyncio.to_thread(futures[group_id].result, 15)
        if group.state == ConsumerGroupState.STABLE and len(group.members) >= count:
            return
        assert time.monotonic() < deadline, f"{group_id}: {group.state}, {len(group.members)}"
        await asyncio.sleep(0.2)


async def replies_at_least(probe: Probe, count: int, group: ProcessGroup) -> None:
    while len(probe.replies) < count:
        group.check_alive()
        await asyncio.sleep(0.005)


@pytest.mark.timeout(300)
async def test_instances_charge_each_message_id_once_through_rebalances_and_a_crash(
    kafka_bootstrap: str, units: ProcessGroup, tmp_path: Path, alias: str
) -> None:
    """Two instances of payments share the work; a third joins mid-stream and one is
    SIGKILLed under a burst and restarted (what it had not acknowledged Kafka redelivers to
    another). Every message id is sent two or three times, each repeat to another partition
    than the first, so most repeats reach another instance than the one that answered.
    Each message id gets exactly one charge, and every answer to it carries that charge."""
    count, lag = 300, 20
    topic = topic_of(payments.CHARGE, alias)
    await ensure_topics(Connection(kafka_bootstrap), [topic], partitions=PARTITIONS)
    ids = [uuid.uuid4().hex for _ in range(count)]
    sent: dict[str, list[str]] = defaultdict(list)

    async def send(i: int, copy: int) -> None:
        body = order(i) | {"order_id": f"{alias}-{i}"}
        partition = (i + copy * PARTITIONS // 2) % PARTITIONS
        correlation = await probe.send_to_partition(topic, partition, body, message_id=ids[i])
        sent[ids[i]].append(correlation)

    async with Probe(kafka_bootstrap, f"mbs.replies.{alias}") as probe:
        first = start_instance(units, "payments", alias)
        start_instance(units, "payments", alias)
        await call(probe, topic, order(0) | {"order_id": f"{alias}-warm-up"})
        await members_at_least(kafka_bootstrap, f"mbs.unit.{alias}.{payments.CHARGE.capability}", 2)
        for i in range(count):
            await send(i, copy=0)
            if i >= lag:
                await send(i - lag, copy=1)
            if i == count // 4:
                start_instance(units, "payments", alias)  # joins mid-stream: a rebalance
            if i == count // 2:
                answered = len(probe.replies)
                for j in range(i):  # a burst of third copies, and a crash while it is served
                    await send(j, copy=2)
                await probe.flush()
                await replies_at_least(probe, answered + lag, units)
                units.kill(first)
                start_instance(units, "payments", alias)
            await asyncio.sleep(0.05)  # a paced stream, so the rebalance and crash land mid-way
        for i in range(count - lag, count):
            await send(i, copy=1)
        await probe.flush()
        await probe.wait_for([c for cs in sent.values() for c in cs], 200)
        await asyncio.sleep(1)  # let late duplicates arrive before counting
    charged = {
        m: {json.loads(body).get("charge_id") for c in cs for body, _ in probe.replies[c]}
        for m, cs in sent.items()
    }
    assert all(None not in ids for ids in charged.values()), "every answer is a charge"
    twice = {m: ids for m, ids in charged.items() if len(ids) > 1}
    assert not twice, f"{len(twice)} of {count} message ids got different answers"
    stored = store_of(tmp_path, alias).table("charges", payments.Charge).values()
    orders = Counter(c.order_id for c in stored if c.order_id != f"{alias}-warm-up")
    assert orders == Counter(f"{alias}-{i}" for i in range(count)), "one charge per order"
    assert {c.charge_id for c in stored} >= {next(iter(ids)) for ids in charged.values()}


async def call(probe: Probe, topic: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    correlation = await probe.send(topic, body, **kw)
    await probe.wait_for([correlation], 90)
    reply, hdrs = probe.first(correlation)
    assert h.ERROR not in hdrs, hdrs
    return reply


async def test_payments_knows_its_charges_after_sigkill(
    kafka_bootstrap: str, units: ProcessGroup, alias: str
) -> None:
    message_id = uuid.uuid4().hex
    charge_topic = topic_of(payments.CHARGE, alias)
    async with Probe(kafka_bootstrap, f"mbs.replies.{alias}") as probe:
        unit = start_instance(units, "payments", alias)
        charge = await call(probe, charge_topic, order(1), message_id=message_id)
        units.kill(unit)
        start_instance(units, "payments", alias)
        refund_topic = topic_of(payments.REFUND, alias)
        refund = await call(probe, refund_topic, {"charge_id": charge["charge_id"]})
        again = await call(probe, charge_topic, order(1), message_id=message_id)
    assert refund["charge_id"] == charge["charge_id"], "the charge survived the crash"
    assert again == charge, "and so did the memory of the answer"


async def test_inventory_stock_after_restart_equals_stock_before(
    kafka_bootstrap: str, units: ProcessGroup, tmp_path: Path, alias: str
) -> None:
    sku = "milk-jug-350ml"
    reserve_topic = topic_of(inventory.RESERVE, alias)
    reserve = {"order_id": "o-1", "sku": sku, "quantity": 3}
    async with Probe(kafka_bootstrap, f"mbs.replies.{alias}") as probe:
        unit = start_instance(units, "inventory", alias)
        before = (await call(probe, reserve_topic, reserve))["remaining"]
        await stop(unit)
        stock_between = store_of(tmp_path, alias).table("on_hand", int).get(sku)
        start_instance(units, "inventory", alias)
        after = (await call(probe, reserve_topic, reserve))["remaining"]
    assert stock_between == before
    assert after == before - 3, "the restarted unit went on from the stock it had"
