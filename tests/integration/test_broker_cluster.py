"""`mbs broker up --nodes 3` (issue 13): a local three-node cluster on private ports and state
where platform topics get three replicas and min.insync.replicas 2, so acks=all writes and
group consumption go on while any one node, the active controller included, is SIGKILLed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from mbs.broker import LocalCluster
from mbs.kafka.admin import ensure_topics
from mbs.kafka.connection import Connection
from mbs.settings import Settings
from mbs.testing import free_port

pytestmark = pytest.mark.kafka
HEAP = "384m"  # three JVMs beside the shared broker and other tests on a small machine


def mbs(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mbs", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def cluster_java(home: Path) -> list[int]:
    """Pids of java processes running a node of a cluster under `home`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"kafka.Kafka" in cmdline and str(home).encode() in cmdline:
            pids.append(int(proc.name))
    return pids


@pytest.fixture
def cluster_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private MBS_HOME and base port; whatever runs there is stopped afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MBS_")}
    env |= {
        "MBS_HOME": str(tmp_path),
        "MBS_BROKER_PORT": str(free_port(6)),
        "MBS_BROKER_HEAP": HEAP,
    }
    try:
        yield env
    finally:
        mbs("broker", "down", env=env)
        for pid in cluster_java(tmp_path):  # only if `down` failed: never leave java behind
            os.kill(pid, 9)


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, request_timeout_ms=10_000
    )
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, group: str, want: int) -> set[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest"
    )
    await consumer.start()
    seen: set[bytes] = set()
    try:
        deadline = time.monotonic() + 45
        while len(seen) < want and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                seen |= {r.value for r in records if r.value is not None}
        await consumer.commit()
    finally:
        await consumer.stop()
    return seen


async def replication_of(bootstrap: str, topic: str) -> tuple[set[int], str]:
    """Replica counts of the topic's partitions, and its min.insync.replicas."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for _ in range(50):  # a node learns of a new topic's partitions a moment later
            [described] = await admin.describe_topics([topic])
            if described["partitions"]:
                break
            await asyncio.sleep(0.2)
        for _ in range(50):  # and of its configs: the node asked may not know them yet
            [configs] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )
            entries = {entry[0]: entry[1] for entry in configs.resources[0][4]}
            if "min.insync.replicas" in entries:
                break
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    replicas = {len(p["replicas"]) for p in described["partitions"]}
    return replicas, entries.get("min.insync.replicas", "missing")


@pytest.mark.timeout(300)
def test_three_nodes_replicate_and_survive_one_node_killed(cluster_env: dict[str, str]) -> None:
    home = Path(cluster_env["MBS_HOME"])
    base = int(cluster_env["MBS_BROKER_PORT"])
    started = time.monotonic()
    up = mbs("broker", "up", "--nodes", "3", env=cluster_env)
    assert up.returncode == 0, up.stderr
    bootstrap = up.stdout.strip()
    assert bootstrap == f"127.0.0.1:{base},127.0.0.1:{base + 2},127.0.0.1:{base + 4}"
    assert len(cluster_java(home)) == 3
    print(f"up in {time.monotonic() - started:.1f}s")

    cluster = LocalCluster(Settings(home=home, broker_port=base, broker_heap=HEAP))
    topic = "cluster.test.orders"
    asyncio.run(ensure_topics(Connection(bootstrap), [topic]))
    assert asyncio.run(replication_of(bootstrap, topic)) == ({3}, "2")
    asyncio.run(produce(bootstrap, topic, [b"a%d" % i for i in range(10)]))

    sent = 10
    controller = cluster.active_controller()
    assert controller is not None
    other = next(n for n in (1, 2, 3) if n != controller)
    for victim in (controller, other):  # the active controller once, then another node
        cluster.kill(victim)
        assert len(cluster_java(home)) == 2
        batch = [b"k%d-%d" % (victim, i) for i in range(10)]
        asyncio.run(produce(bootstrap, topic, batch))
        sent += len(batch)
        seen = asyncio.run(consume(bootstrap, topic, f"g-{victim}", sent))
        assert len(seen) == sent, f"after killing node {victim}: {len(seen)} of {sent}"
        cluster.restart(victim)
        cluster.wait_started([victim], timeout_s=90)
        print(f"node {victim} killed and back at {time.monotonic() - started:.1f}s")
    assert cluster.active_controller() is not None

    status = mbs("broker", "status", "-o", "json", env=cluster_env)
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert (shown["state"], shown["running"], len(shown["nodes"])) == ("running", 3, 3)
    logs = mbs("broker", "logs", "--node", "2", "-n", "5", env=cluster_env)
    assert logs.returncode == 0, logs.stderr
    assert "INFO" in logs.stdout

    down = mbs("broker", "down", env=cluster_env)
    assert down.returncode == 0, down.stderr
    assert cluster_java(home) == []
    gone = mbs("broker", "status", env=cluster_env)
    assert gone.returncode == 4
    print(f"whole test {time.monotonic() - started:.1f}s")
