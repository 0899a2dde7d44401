"""The brokers of a chaos run with `--nodes 3`: a private local cluster (own ports, own
MBS_HOME under --out) and the fourth kill kind, one node at a time.

A broker kill: SIGKILL a node (the active controller when the plan says "controller"), wait
a short pause, restart it, and time it until it has started (restart to serving); then wait
until no partition is under-replicated, so the next kill never takes the last in-sync copy."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from mbs.broker import LocalCluster
from mbs.settings import Settings
from mbs.testing import free_port

CONTROLLER = "controller"  # a planned victim resolved at kill time to the active controller
HEAP = "384m"  # three JVMs next to a dozen Python processes on a small machine
IN_SYNC_TIMEOUT_S = 90.0


@dataclass
class Brokers:
    """The run's cluster: started before the cast, stopped after the checker has read it."""

    out_dir: Path
    nodes: int
    say: Callable[[str], None]
    cluster: LocalCluster = field(init=False)
    down: set[int] = field(default_factory=set)  # killed, or restarted but not started yet

    def __post_init__(self) -> None:
        settings = Settings(
            home=self.out_dir / "kafka",
            broker_port=free_port(2 * self.nodes),
            broker_heap=os.environ.get("MBS_BROKER_HEAP", HEAP),
            kafka_bootstrap=None,
        )
        self.cluster = LocalCluster(settings, self.nodes)

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    def one_up(self) -> str:
        """The address of one node that is up (for a unit, see `Cast.unit_bootstrap`)."""
        up = [n for n in self.cluster.nodes if n.node_id not in self.down] or self.cluster.nodes
        return random.choice(up).address

    def names(self) -> list[str]:
        return [f"node-{node.node_id}" for node in self.cluster.nodes]

    async def start(self) -> None:
        await asyncio.to_thread(self.cluster.up, self.say)

    def stop(self) -> None:
        self.cluster.down(self.say)

    def resolve(self, victim: str) -> tuple[int, str]:
        """The node id and a name for the log: "controller" becomes the active one."""
        if victim == CONTROLLER:
            active = self.cluster.active_controller()
            if active is not None:
                return active, f"node-{active} (active controller)"
            victim = "node-1"
        return int(victim.removeprefix("node-")), victim

    def kill(self, node_id: int) -> int:
        self.down.add(node_id)
        return self.cluster.kill(node_id)

    def restart(self, node_id: int) -> float:
        """Start the node again; the epoch time of the restart."""
        self.cluster.restart(node_id)
        return time.time()

    async def until_started(self, node_id: int, timeout_s: float = 120.0) -> None:
        await asyncio.to_thread(self.cluster.wait_started, [node_id], timeout_s)
        self.down.discard(node_id)

    async def until_in_sync(self, timeout_s: float = IN_SYNC_TIMEOUT_S) -> int:
        """Until every partition has its full ISR; the partitions still short at the end."""
        deadline = time.monotonic() + timeout_s
        short = -1
        while time.monotonic() < deadline:
            try:
                short = await self._under_replicated()
            except Exception as exc:  # a node still starting: ask again
                self.say(f"  (in-sync check: {type(exc).__name__})")
                short = -1
            if short == 0:
                return 0
            await asyncio.sleep(1.0)
        return short

    async def _under_replicated(self) -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
        await admin.start()
        try:
            topics = await admin.list_topics()
            described = await admin.describe_topics(topics)
        finally:
            await admin.close()
        return sum(
            1
            for topic in described
            for part in topic.get("partitions", [])
            if len(part.get("isr", [])) < len(part.get("replicas", []))
        )
