"""The kills of a chaos run: a seeded plan per kind (gateway, unit instance, partner, and on
a cluster broker), then carried out: SIGKILL, a short random pause, a restart, and the time
until it serves again.

Kills of one kind come one after another (the next waits until the last victim serves
again; a broker's, also until every partition is fully in sync), so a pair never loses both
members at once and the cluster never loses two nodes; kinds overlap freely."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.chaos_brokers import CONTROLLER, Brokers
from bench.chaos_cast import Cast

KINDS = ("gateway", "unit", "partner", "broker")
SECONDS_PER_KILL = 20.0  # one kill of each kind per this many seconds of load
SECONDS_PER_BROKER_KILL = 30.0  # a node takes ~10 s to start and more to catch up
BROKER_DOWN_S = (1.0, 5.0)
CONTROLLER_EVERY = 3  # every third broker kill takes the active controller, the first too
# On a cluster a process started while a node is down may die at start-up (see the report);
# like a supervisor, the run starts it again, at most this many times, 1 s apart.
START_RETRIES = 5
FIRST_KILL_S = 5.0
QUIET_TAIL_S = 12.0  # no kill this close to the end: the last victim serves before the drain
DOWN_S = (0.5, 3.0)


@dataclass(frozen=True)
class PlannedKill:
    at_s: float  # after the load started
    kind: str
    member: str
    down_s: float  # pause before the restart


@dataclass
class Kill:
    """What happened: times are epoch seconds; `serving_s` from the restart."""

    kind: str
    member: str
    pid: int
    killed_at: float
    restarted_at: float = 0.0
    serving_at: float | None = None
    error: str = ""
    in_sync_at: float | None = None  # a broker: when no partition was under-replicated
    failed_starts: int = 0  # lives that died while starting, each started again

    @property
    def serving_s(self) -> float | None:
        return None if self.serving_at is None else round(self.serving_at - self.restarted_at, 3)

    def window(self, fallback_s: float = 10.0) -> tuple[float, float]:
        """The outage: from the kill until the new life serves (or a fallback guess)."""
        end = self.serving_at or (self.restarted_at or self.killed_at) + fallback_s
        return self.killed_at, end

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "member": self.member,
            "pid": self.pid,
            "killed_at": round(self.killed_at, 3),
            "restarted_at": round(self.restarted_at, 3),
            "serving_at": None if self.serving_at is None else round(self.serving_at, 3),
            "restart_to_serving_s": self.serving_s,
            "restart_to_in_sync_s": (
                None if self.in_sync_at is None else round(self.in_sync_at - self.restarted_at, 3)
            ),
            "failed_starts": self.failed_starts,
            "error": self.error,
        }


def plan_kills(
    rng: random.Random, seconds: float, cast: Cast, brokers: Brokers | None = None
) -> list[PlannedKill]:
    """Per kind, max(2, seconds / 20) kills (brokers: seconds / 30), one at a random moment
    in the first half of each equal slot between FIRST_KILL_S and QUIET_TAIL_S before the
    end. Victims take turns in a shuffled order, so both gateways and every unit instance
    get killed; the first and every third broker victim is the active controller."""
    plan = []
    for kind in KINDS:
        if kind == "broker":
            if brokers is None:
                continue
            count = max(2, int(seconds // SECONDS_PER_BROKER_KILL))
            nodes = brokers.names()
            rng.shuffle(nodes)
            victims = [
                CONTROLLER if i % CONTROLLER_EVERY == 0 else nodes[i % len(nodes)]
                for i in range(count)
            ]
            down = BROKER_DOWN_S
        else:
            count = max(2, int(seconds // SECONDS_PER_KILL))
            victims = [m.name for m in cast.of_kind(kind)]
            rng.shuffle(victims)
            down = DOWN_S
        end = max(FIRST_KILL_S + count, seconds - QUIET_TAIL_S)
        slot = (end - FIRST_KILL_S) / count
        plan += [
            PlannedKill(
                at_s=round(FIRST_KILL_S + i * slot + rng.uniform(0, slot / 2), 3),
                kind=kind,
                member=victims[i % len(victims)],
                down_s=round(rng.uniform(*down), 3),
            )
            for i in range(count)
        ]
    return sorted(plan, key=lambda p: p.at_s)


@dataclass
class Killer:
    """Carries out the plan against the cast; `say` logs each event as it happens."""

    cast: Cast
    say: Callable[[str], None]
    brokers: Brokers | None = None
    kills: list[Kill] = field(default_factory=list)

    async def carry_out(self, plan: list[PlannedKill], started: float, stop_at: float) -> None:
        """Each kind's kills in order, the kinds side by side; none starts after `stop_at`
        (monotonic), and every restart begun is seen serving before this returns."""
        await asyncio.gather(
            *(self._kind([p for p in plan if p.kind == kind], started, stop_at) for kind in KINDS)
        )

    async def _kind(self, plan: list[PlannedKill], started: float, stop_at: float) -> None:
        for planned in plan:
            await asyncio.sleep(max(0.0, started + planned.at_s - time.monotonic()))
            if time.monotonic() >= stop_at:
                self.say(f"skip {planned.kind} kill of {planned.member}: the load is over")
                return
            await self._kill_and_restart(planned)

    async def _kill_and_restart(self, planned: PlannedKill) -> None:
        if planned.kind == "broker":
            await self._kill_broker(planned)
            return
        member = self.cast.members[planned.member]
        if member.process is None or not member.process.alive():
            self.say(f"skip {planned.kind} kill of {member.name}: it is not running")
            return
        pid = self.cast.kill(member)
        kill = Kill(planned.kind, member.name, pid, killed_at=time.time())
        self.kills.append(kill)
        self.say(f"KILL {planned.kind} {member.name} (pid {pid}); restart in {planned.down_s}s")
        await asyncio.sleep(planned.down_s)
        self.cast.spawn(member)
        kill.restarted_at = member.spawned_at  # restart to serving counts failed starts too
        self.say(f"RESTART {planned.kind} {member.name}")
        retries = START_RETRIES if self.brokers is not None else 0
        while True:
            try:
                await self.cast.until_serving(member)
                break
            except RuntimeError as exc:
                kill.error = kill.error or str(exc)
                self.say(f"NOT SERVING {member.name}: {exc}")
                if kill.failed_starts >= retries or "died while starting" not in str(exc):
                    return
            kill.failed_starts += 1
            await asyncio.sleep(1.0)
            self.cast.spawn(member)
            self.say(f"RESTART {planned.kind} {member.name} again (start {kill.failed_starts + 1})")
        kill.serving_at = time.time()
        self.say(f"SERVING {member.name} {kill.serving_s:.2f}s after its restart")

    async def _kill_broker(self, planned: PlannedKill) -> None:
        assert self.brokers is not None
        node_id, name = self.brokers.resolve(planned.member)
        pid = self.brokers.kill(node_id)
        kill = Kill("broker", name, pid, killed_at=time.time())
        self.kills.append(kill)
        self.say(f"KILL broker {name} (pid {pid}); restart in {planned.down_s}s")
        await asyncio.sleep(planned.down_s)
        kill.restarted_at = self.brokers.restart(node_id)
        self.say(f"RESTART broker node-{node_id}")
        try:
            await self.brokers.until_started(node_id)
        except Exception as exc:  # reported, and the run goes on
            kill.error = str(exc)
            self.say(f"NOT SERVING broker node-{node_id}: {exc}")
            return
        kill.serving_at = time.time()
        self.say(f"SERVING broker node-{node_id} {kill.serving_s:.2f}s after its restart")
        short = await self.brokers.until_in_sync()
        if short:
            kill.error = f"{short} partitions still under-replicated"
            self.say(f"NOT IN SYNC after broker node-{node_id}: {kill.error}")
            return
        kill.in_sync_at = time.time()
        self.say(f"IN SYNC: every partition fully replicated again ({name})")
