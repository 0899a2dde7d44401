"""The cast of a chaos run: every process of a small ecosystem, each restartable under its own
name, on private journey-log, definitions and registry topics and a private state directory.

Two gateways, two instances each of payments and inventory (one state directory, so each
pair shares its SQLite file), one of every other unit, and the partner FastShip. A restarted
member keeps its name (and a gateway its port); each life logs to its own file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from mbs.cli.processes import Process, ProcessGroup, free_port

STEADY_UNITS = ("pricing", "fraud", "shipping", "notifications")
DOUBLED_UNITS = ("payments", "inventory")
PARTNER = "fastship"
GATEWAYS = ("gateway-a", "gateway-b")
SERVING_TIMEOUT_S = 90.0


def private_topics(uid: str) -> dict[str, str]:
    """MBS_* variables giving this run its own journey log, definitions, registry and group
    (the request topics are the ecosystem's own: only one run may use them at a time)."""
    return {
        "MBS_JOURNEYS_TOPIC": f"chaos.journeys.state.{uid}",
        "MBS_DEFINITIONS_TOPIC": f"chaos.journeys.defs.{uid}",
        "MBS_CONTRACTS_TOPIC": f"chaos.contracts.{uid}",
        "MBS_GATEWAY_GROUP": f"chaos.gateway.{uid}",
    }


@dataclass
class Member:
    """One restartable process: a gateway, a unit instance, or the partner."""

    name: str
    kind: str  # "gateway", "unit" (payments or inventory), "partner", "steady"
    unit: str = ""  # the unit it runs ("" for a gateway)
    port: int = 0  # a gateway's HTTP port, kept across restarts
    lives: int = 0
    process: Process | None = None
    spawned_at: float = 0.0  # epoch seconds of the current life's start

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Cast:
    """Starts, kills and restarts the members; tells when a life is serving."""

    def __init__(
        self,
        bootstrap: str,
        out_dir: Path,
        uid: str,
        unit_bootstrap: Callable[[], str] | None = None,
        *,
        static: bool = True,
    ) -> None:
        # A unit's FastStream broker takes a comma list as one host (FastStream 0.7 wraps a
        # str in a list): on a cluster, each unit life gets one node that is up right now.
        self.unit_bootstrap = unit_bootstrap
        self.static = static  # each life of a member joins as MBS_INSTANCE_ID=<its name>
        self.topics = private_topics(uid)
        self.state_dir = out_dir / "units"
        self.group = ProcessGroup(
            out_dir / "logs",
            env={
                "MBS_KAFKA_BOOTSTRAP": bootstrap,
                "MBS_UNIT_PORT": "0",
                "MBS_UNIT_STATE_DIR": str(self.state_dir),
                "MBS_LOG_FORMAT": "plain",  # one line per record: "serving" is greppable
                **self.topics,
            },
        )
        members = [Member(u, "steady", u) for u in STEADY_UNITS]
        members += [Member(f"{u}-{i}", "unit", u) for u in DOUBLED_UNITS for i in (1, 2)]
        members += [Member(PARTNER, "partner", PARTNER)]
        members += [Member(g, "gateway", port=free_port()) for g in GATEWAYS]
        self.members = {m.name: m for m in members}

    def of_kind(self, kind: str) -> list[Member]:
        return [m for m in self.members.values() if m.kind == kind]

    def gateway_urls(self) -> list[str]:
        return [m.url for m in self.of_kind("gateway")]

    def spawn(self, member: Member) -> None:
        """Start a new life of `member` (its log: `<name>.log`, then `<name>.<life>.log`)."""
        member.lives += 1
        log_name = member.name if member.lives == 1 else f"{member.name}.{member.lives}"
        if member.kind == "gateway":
            args: tuple[str, ...] = ("run", "gateway")
            env = {"MBS_GATEWAY_PORT": str(member.port)}
        else:
            args, env = ("run", "unit", member.unit), {}
            if self.unit_bootstrap is not None:
                env = {"MBS_KAFKA_BOOTSTRAP": self.unit_bootstrap()}
        if self.static:
            env["MBS_INSTANCE_ID"] = member.name
        member.process = self.group.start(log_name, *args, env=env)
        member.spawned_at = time.time()

    def kill(self, member: Member) -> int:
        """SIGKILL the member's process group (no drain, no goodbye); its pid."""
        assert member.process is not None, f"{member.name} is not running"
        pid = member.process.popen.pid
        self.group.kill(member.process)
        member.process = None
        return pid

    async def until_serving(self, member: Member, timeout_s: float = SERVING_TIMEOUT_S) -> float:
        """Seconds from this life's start until it serves: a gateway's /readyz says 200
        (Kafka reachable, journey log replayed); a unit logs that it is serving (its
        consumers subscribed). Raises if it dies or takes longer than `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                process = member.process
                if process is None or not process.alive():
                    raise RuntimeError(f"{member.name} died while starting:\n{_tail(process)}")
                if await self._serving(member, process, client):
                    return time.time() - member.spawned_at
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{member.name} not serving within {timeout_s:g}s")

    @staticmethod
    async def _serving(member: Member, process: Process, client: httpx.AsyncClient) -> bool:
        if member.kind == "gateway":
            try:
                return (await client.get(f"{member.url}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False
        try:
            return f"unit {member.unit} serving" in process.log_file.read_text(errors="replace")
        except OSError:
            return False

    async def start_all(self) -> None:
        """Everything at once (a gateway starts from the checkout's contracts, so it need
        not wait for the units to register theirs); returns once all serve."""
        for member in self.members.values():
            self.spawn(member)
        await asyncio.gather(*(self.until_serving(m) for m in self.members.values()))

    def crashed(self) -> list[str]:
        """Members whose process ended without being killed by the run."""
        return [
            f"{m.name} (exit {m.process.popen.returncode})"
            for m in self.members.values()
            if m.process is not None and not m.process.alive()
        ]

    def stop(self) -> None:
        """SIGTERM everything (units drain and commit), SIGKILL what lingers."""
        self.group.stop()


def _tail(process: Process | None) -> str:
    return process.tail() if process is not None else ""
