"""`MBS_INSTANCE_ID`: a unit instance restarted under the same name takes its partitions back
at once, and the other instances of its unit are not rebalanced (Kafka static membership).

Without it, every restart costs two rebalances of the whole group: one when the dead member's
session expires, one when its new life joins; each pauses every instance of the unit."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from contracts import payments
from mbs.kafka import Connection, ensure_topics
from mbs.testing import Process, ProcessGroup
from tests.integration.test_unit_processes import (
    PARTITIONS,
    alias,  # noqa: F401 (a fixture)
    call,
    members_at_least,
    order,
    topic_of,
    units,  # noqa: F401 (a fixture)
)
from tests.kafka_probe import Probe

pytestmark = pytest.mark.kafka

ASSIGNED = "assigned to partitions"


def start(group: ProcessGroup, name: str, instance: str, life: int) -> Process:
    return group.start(
        f"{name}-{instance}-{life}",
        "payments",
        name,
        module="tests.aliased_unit",
        env={"MBS_INSTANCE_ID": instance},
    )


def assignments(process: Process) -> int:
    return process.log_file.read_text(errors="replace").count(ASSIGNED)


@pytest.mark.timeout(180)
async def test_a_restarted_static_member_takes_its_partitions_back_without_a_rebalance(
    kafka_bootstrap: str,
    units: ProcessGroup,  # noqa: F811
    alias: str,  # noqa: F811
) -> None:
    topic = topic_of(payments.CHARGE, alias)
    await ensure_topics(Connection(kafka_bootstrap), [topic], partitions=PARTITIONS)
    async with Probe(kafka_bootstrap, f"mbs.replies.{alias}") as probe:
        first = start(units, alias, "a", 1)
        other = start(units, alias, "b", 1)
        await call(probe, topic, order(0) | {"order_id": f"{alias}-warm-up"})
        # each instance is MBS_UNIT_CONCURRENCY (3) members, every partition owned
        for capability in (payments.CHARGE.capability, payments.REFUND.capability):
            await members_at_least(kafka_bootstrap, f"mbs.unit.{alias}.{capability}", 6)
        await asyncio.sleep(2)  # nothing more in flight in the group
        before = assignments(other)
        assert before > 0, other.tail()

        units.kill(first)
        await asyncio.sleep(0.5)
        restarted_at = time.monotonic()
        again = start(units, alias, "a", 2)
        bodies = [order(i) | {"order_id": f"{alias}-{uuid.uuid4().hex}"} for i in range(12)]
        sent = [
            await probe.send_to_partition(topic, i % PARTITIONS, body, message_id=uuid.uuid4().hex)
            for i, body in enumerate(bodies)
        ]
        await probe.wait_for(sent, 60)
        answered_s = time.monotonic() - restarted_at

    assert ASSIGNED in again.log_file.read_text(errors="replace"), again.tail()
    assert assignments(other) == before, (
        f"the other instance was rebalanced while its sibling restarted:\n{other.tail()}"
    )
    # measured, not asserted (see RELIABILITY.md): 0.8 s here, 7.4 s without MBS_INSTANCE_ID
    print(f"every partition answered {answered_s:.1f}s after the restart")
