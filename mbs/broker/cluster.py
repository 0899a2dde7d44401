"""A local N-node KRaft cluster (`mbs broker up --nodes 3`) from the same cached jars as the
single broker, so replication, min.insync.replicas and the loss of one node can be tried on
one machine.

Every node is controller and broker at once (combined roles, as in a small production
cluster). Node N (1-based) listens on base + 2(N-1) and its controller on base + 2(N-1) + 1:
with base 9092, brokers 9092, 9094, 9096 and controllers 9093, 9095, 9097. State lives in
MBS_HOME/cluster-<base>/node-<N>/ (data, broker.log, broker.pid, server.properties)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from string import Template

from mbs.broker import jars
from mbs.broker.jars import DEPLOY_DIR, KAFKA_VERSION, MARKER_JAR, Progress, require_tool
from mbs.broker.local import _alive, _is_kafka, _port_open, _stop, java_cmd
from mbs.errors import BrokerError
from mbs.settings import Settings

PORT_STEP = 2  # each node takes a broker port and the controller port after it
MAX_NODES = 5
MAX_REPLICAS = 3


def _quiet(_: str) -> None:
    return None


def highest_base(nodes: int) -> int:
    """The highest base port whose nodes' ports all fit below 65536."""
    return 65535 - (PORT_STEP * nodes - 1)


@dataclass(frozen=True)
class NodeStatus:
    """One node as `mbs broker status` shows it."""

    node: int
    running: bool
    address: str
    controller: str
    pid: int | None
    data_dir: Path
    log_file: Path


class ClusterNode:
    """One combined controller+broker JVM of the cluster."""

    def __init__(self, run_dir: Path, base_port: int, node_id: int) -> None:
        self.node_id = node_id
        self.port = base_port + PORT_STEP * (node_id - 1)
        self.controller_port = self.port + 1
        self.run_dir = run_dir / f"node-{node_id}"
        self.data_dir = self.run_dir / "data"
        self.pid_file = self.run_dir / "broker.pid"
        self.log_file = self.run_dir / "broker.log"
        self.props_file = self.run_dir / "server.properties"
        self._log_from = 0  # where this life's log starts: a restart must not read the last

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def live_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) and _is_kafka(pid) else None

    def status(self) -> NodeStatus:
        pid = self.live_pid()
        return NodeStatus(
            node=self.node_id,
            running=pid is not None,
            address=self.address,
            controller=f"127.0.0.1:{self.controller_port}",
            pid=pid,
            data_dir=self.data_dir,
            log_file=self.log_file,
        )

    def spawn(self, command: list[str]) -> subprocess.Popen[bytes]:
        """Start this node's JVM without waiting for it (a lone node cannot elect a leader)."""
        self._log_from = self.log_file.stat().st_size if self.log_file.is_file() else 0
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                [*command, str(self.props_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc

    def started(self) -> bool:
        """This life logged that it started and its port accepts connections."""
        try:
            with self.log_file.open("rb") as log:
                log.seek(self._log_from)
                said = b"Kafka Server started" in log.read()
        except OSError:
            return False
        return said and _port_open(self.port)

    def kill(self) -> int:
        """SIGKILL (no controlled shutdown); returns the pid once the process is gone."""
        pid = self.live_pid()
        if pid is None:
            raise BrokerError(f"node {self.node_id} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return pid

    def logs(self, lines: int) -> list[str]:
        if not self.log_file.is_file():
            return []
        return self.log_file.read_text(errors="replace").splitlines()[-lines:]

    def quorum_state(self) -> tuple[int, int] | None:
        """(leader epoch, leader id) this node last wrote down, if it knows a leader."""
        path = self.data_dir / "__cluster_metadata-0" / "quorum-state"
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        leader = int(state.get("leaderId", -1))
        return (int(state.get("leaderEpoch", -1)), leader) if leader > 0 else None


class LocalCluster:
    """Formats, starts, stops and SIGKILLs the nodes of one local cluster on 127.0.0.1."""

    def __init__(self, settings: Settings, nodes: int | None = None) -> None:
        self.settings = settings
        self.base_port = settings.broker_port
        self.heap = settings.broker_heap
        self.start_timeout = settings.broker_start_timeout
        self.libs_dir = settings.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"
        self.run_dir = settings.home / f"cluster-{self.base_port}"
        self.meta_file = self.run_dir / "cluster.json"
        count = nodes or self._recorded_nodes() or MAX_REPLICAS
        if not 2 <= count <= MAX_NODES:
            raise BrokerError(f"a local cluster has 2-{MAX_NODES} nodes, not {count}")
        if self.base_port > highest_base(count):
            raise BrokerError(
                f"{count} nodes on base port {self.base_port} need ports up to "
                f"{self.base_port + PORT_STEP * count - 1}; pick a port at most "
                f"{highest_base(count)}"
            )
        self.nodes = [ClusterNode(self.run_dir, self.base_port, i + 1) for i in range(count)]
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    @classmethod
    def on_port(cls, settings: Settings) -> LocalCluster | None:
        """The cluster whose base port is the settings' port, if one was ever started here."""
        home = settings.home / f"cluster-{settings.broker_port}" / "cluster.json"
        return cls(settings) if home.is_file() else None

    @property
    def bootstrap(self) -> str:
        """Every node's address: a client reaches the cluster while any one of them is up."""
        return ",".join(node.address for node in self.nodes)

    def node(self, node_id: int) -> ClusterNode:
        if not 1 <= node_id <= len(self.nodes):
            raise BrokerError(f"no node {node_id}: the cluster has nodes 1-{len(self.nodes)}")
        return self.nodes[node_id - 1]

    def status(self) -> list[NodeStatus]:
        return [node.status() for node in self.nodes]

    def running(self) -> int:
        return sum(1 for node in self.nodes if node.live_pid() is not None)

    # -- lifecycle --------------------------------------------------------------------------

    def up(self, progress: Progress = _quiet) -> list[NodeStatus]:
        """Start the nodes not running and return once all have started. A failed or
        interrupted start stops the nodes it started."""
        waiting = [node for node in self.nodes if node.live_pid() is None]
        if not waiting:
            progress(f"cluster already running on {self.bootstrap}")
            return self.status()
        for node in waiting:
            for port in (node.port, node.controller_port):
                if _port_open(port):
                    raise BrokerError(
                        f"port {port} (node {node.node_id}) is taken by another process; "
                        "pick another base port with --port or MBS_BROKER_PORT"
                    )
        java = require_tool("java", "a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless)")
        if not (self.libs_dir / MARKER_JAR).is_file():
            jars.fetch_jars(self.libs_dir, progress)
        self._prepare(java)
        progress(f"starting a {len(self.nodes)}-node Kafka {KAFKA_VERSION} on {self.bootstrap}")
        started = time.monotonic()
        try:
            for node in waiting:
                self._procs[node.node_id] = node.spawn(self._command(java))
            self.wait_started([node.node_id for node in waiting])
        except BaseException:
            for node in waiting:
                if (pid := node.live_pid()) is not None:
                    _stop(pid, grace_s=5.0)
                node.pid_file.unlink(missing_ok=True)
            raise
        progress(f"cluster ready on {self.bootstrap} in {time.monotonic() - started:.1f}s")
        return self.status()

    def restart(self, node_id: int, java: str | None = None) -> None:
        """Start one stopped node again without waiting (see `wait_started`)."""
        node = self.node(node_id)
        if node.live_pid() is not None:
            return
        java = java or require_tool("java", "a JDK 17+")
        self._procs[node_id] = node.spawn(self._command(java))

    def wait_started(self, node_ids: list[int], timeout_s: float | None = None) -> None:
        """Until each of these nodes has started; raises if one exits or time runs out."""
        deadline = time.monotonic() + (timeout_s or self.start_timeout)
        pending = set(node_ids)
        while pending and time.monotonic() < deadline:
            for node_id in sorted(pending):
                node = self.node(node_id)
                proc = self._procs.get(node_id)
                if proc is not None and proc.poll() is not None:
                    node.pid_file.unlink(missing_ok=True)
                    raise BrokerError(
                        f"node {node_id} exited with code {proc.returncode} during start-up. "
                        f"Last log lines ({node.log_file}):\n" + "\n".join(node.logs(25))
                    )
                if node.started():
                    pending.discard(node_id)
            time.sleep(0.2)
        if pending:
            raise BrokerError(
                f"nodes {sorted(pending)} did not start within {timeout_s or self.start_timeout:g}"
                "s; see their broker.log or raise MBS_BROKER_START_TIMEOUT"
            )

    def kill(self, node_id: int) -> int:
        """SIGKILL one node; its pid."""
        pid = self.node(node_id).kill()
        if (proc := self._procs.pop(node_id, None)) is not None:
            proc.wait()
        return pid

    def down(self, progress: Progress = _quiet) -> bool:
        """SIGTERM every node at once (then SIGKILL after 30 s); True if any was running."""
        pids = [(node, pid) for node in self.nodes if (pid := node.live_pid()) is not None]
        if not pids:
            progress("cluster not running")
            return False
        progress(f"stopping {len(pids)} node(s): pids {', '.join(str(p) for _, p in pids)}")
        for _, pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for node, pid in pids:
            _stop(pid)
            node.pid_file.unlink(missing_ok=True)
        for proc in self._procs.values():
            proc.poll()
        self._procs.clear()
        progress("cluster stopped")
        return True

    def active_controller(self) -> int | None:
        """The node id of the quorum leader, as the running nodes wrote it down last."""
        known = [
            state
            for node in self.nodes
            if node.live_pid() is not None and (state := node.quorum_state()) is not None
        ]
        return max(known)[1] if known else None

    # -- internals --------------------------------------------------------------------------

    def _recorded_nodes(self) -> int | None:
        try:
            return int(json.loads(self.meta_file.read_text())["nodes"])
        except (OSError, ValueError, KeyError):
            return None

    def _command(self, java: str) -> list[str]:
        return [
            *java_cmd(java, self.libs_dir),
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "kafka.Kafka",
        ]

    def _prepare(self, java: str) -> None:
        """Render every node's properties; format the nodes never formatted, all with the
        cluster's one id (kept in cluster.json)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        recorded = json.loads(self.meta_file.read_text()) if self.meta_file.is_file() else {}
        cluster_id = recorded.get("cluster_id") or _random_cluster_id()
        self.meta_file.write_text(
            json.dumps({"cluster_id": cluster_id, "nodes": len(self.nodes)}, indent=2)
        )
        replicas = min(MAX_REPLICAS, len(self.nodes))
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        template = Template((DEPLOY_DIR / "cluster.properties").read_text())
        formats = []
        for node in self.nodes:
            node.run_dir.mkdir(parents=True, exist_ok=True)
            values = {
                "node_id": node.node_id,
                "voters": voters,
                "port": node.port,
                "controller_port": node.controller_port,
                "data_dir": node.data_dir,
                "replicas": replicas,
                "min_isr": max(1, replicas - 1),
            }
            node.props_file.write_text(template.substitute(values))
            if not (node.data_dir / "meta.properties").is_file():
                formats.append((node, self._format(java, node, cluster_id)))
        for node, proc in formats:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise BrokerError(f"formatting {node.data_dir} failed:\n{out}")

    def _format(self, java: str, node: ClusterNode, cluster_id: str) -> subprocess.Popen[str]:
        args = ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(node.props_file)]
        return subprocess.Popen(
            [*java_cmd(java, self.libs_dir), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


def _random_cluster_id() -> str:
    """A Kafka Uuid in its base64 form (what `kafka-storage random-uuid` prints), made here
    to spare a JVM start."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text
