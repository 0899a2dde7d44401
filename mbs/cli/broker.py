"""`mbs broker up|down|status|logs`: the local Kafka broker, plain or secure, on one port, or
a local N-node cluster (`up --nodes 3`) whose base port is that port."""

from __future__ import annotations

import os
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from mbs.broker import KAFKA_VERSION, LocalBroker, LocalCluster
from mbs.broker.cluster import MAX_NODES, highest_base
from mbs.cli.common import ModeOption, PortOption, SecureOption, local_broker, say, settings_for
from mbs.cli.exits import Exit, Usage
from mbs.cli.output import Format, OutputOption, emit
from mbs.unit.ecosystem import load_ecosystem

app = typer.Typer(
    help="A local Apache Kafka 3.9.1 (KRaft, 127.0.0.1): one node, or a cluster with --nodes.",
    no_args_is_help=True,
)
NodesOption = Annotated[
    int,
    typer.Option(
        "--nodes",
        min=1,
        max=MAX_NODES,
        help="Nodes (combined controller+broker). With N > 1, node K takes the broker port "
        "PORT + 2(K-1) and the controller port after it; topics get 3 replicas, "
        "min.insync.replicas 2.",
    ),
]
NodeOption = Annotated[
    int | None,
    typer.Option("--node", min=1, max=MAX_NODES, help="A cluster's node (default: node 1)."),
]


def local_cluster(port: int | None, secure: bool | None) -> LocalCluster | None:
    """The cluster on that base port if one was started here and it runs (or the single
    broker of the port does not); never in secure mode or under MBS_KAFKA_BOOTSTRAP."""
    settings = settings_for(port)
    if secure or settings.kafka_bootstrap:
        return None
    cluster = LocalCluster.on_port(settings)
    if cluster is None:
        return None
    if cluster.running() or LocalBroker.on_port(settings, secure).status().pid is None:
        return cluster
    return None


@app.command("up")
def broker_up(
    port: PortOption = None, secure: SecureOption = False, nodes: NodesOption = 1
) -> None:
    """Start the broker (fetching the jars on first use); returns once it accepts connections.
    With --secure: also topics, a principal and ACLs per unit, credentials saved 0600; run
    again, it provisions units added since. With --nodes 3: a local three-node cluster."""
    if nodes > 1:
        _cluster_up(port, secure, nodes)
        return
    broker = local_broker(port, secure)
    if broker is None:
        return
    status = broker.up(progress=say)
    if secure:
        from mbs.broker.provision import provision_ecosystem

        provision_ecosystem(broker, settings_for(port), load_ecosystem().contracts(), say)
    say(
        f"Kafka {status.version} ({broker.mode}) running on [bold]{status.address}[/] "
        f"(pid {status.pid})"
    )


@app.command("down")
def broker_down(port: PortOption = None, secure: ModeOption = None) -> None:
    """Stop the broker of the port, plain or secure, and wait until its java process is gone."""
    if (cluster := local_cluster(port, secure)) is not None:
        cluster.down(progress=say)
        return
    broker = local_broker(port, secure)
    if broker is not None:
        broker.down(progress=say)


@app.command("status")
def broker_status(
    port: PortOption = None, secure: ModeOption = None, output: OutputOption = Format.table
) -> None:
    """Whether a broker runs on the port (plain or secure), its version, address and data
    directory (a cluster: each node's); exit 4 when none runs."""
    if (cluster := local_cluster(port, secure)) is not None:
        _cluster_status(cluster, output)
        return
    broker = local_broker(port, secure)
    if broker is None:
        return
    status = broker.status()
    data: dict[str, Any] = {
        "state": "running" if status.running else "stopped",
        "mode": broker.mode,
        "version": status.version,
        "address": status.address,
        "pid": status.pid,
        "data_dir": str(status.data_dir),
        "log": str(status.log_file),
    }

    def render() -> list[Table]:
        table = Table(show_header=False, box=None)
        for key, value in data.items():
            shown = str(value if value is not None else "-")
            if key == "state":
                shown = "[green]running[/]" if status.running else "[red]stopped[/]"
            table.add_row(key.replace("_", " "), shown)
        return [table]

    emit(output, data, render)
    if not status.running:
        raise typer.Exit(Exit.NOT_RUNNING)


@app.command("logs")
def broker_logs(
    port: PortOption = None,
    secure: ModeOption = None,
    lines: Annotated[int, typer.Option("-n", "--lines", min=0, help="How many lines.")] = 50,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing.")] = False,
    node: NodeOption = None,
) -> None:
    """Print the broker's log (the last N lines; -f to follow); exit 4 if there is none.
    A cluster's: node 1's, or --node N's."""
    if (cluster := local_cluster(port, secure)) is not None:
        chosen = cluster.node(node or 1)
        log_file, address, shown = chosen.log_file, chosen.address, chosen.logs(lines)
    elif node is not None:
        raise Usage("--node is for a local cluster (`mbs broker up --nodes 3`); none is here")
    else:
        broker = local_broker(port, secure)
        if broker is None:
            return
        if secure is None and not broker.status().running:
            broker = _latest_log(broker)
        log_file, address, shown = broker.log_file, broker.address, broker.logs(lines)
    if not log_file.is_file():
        say(f"no broker has run on {address} here yet (no {log_file})")
        raise typer.Exit(Exit.NOT_RUNNING)
    for line in shown:
        print(line)
    if follow:
        with log_file.open() as log:
            log.seek(0, os.SEEK_END)
            while True:
                line = log.readline()
                if line:
                    print(line, end="", flush=True)
                else:
                    time.sleep(0.3)


def _latest_log(broker: LocalBroker) -> LocalBroker:
    """Neither runs: the log written last, plain or secure."""
    twin = LocalBroker(broker.settings, secure=not broker.secure)
    candidates = [b for b in (broker, twin) if b.log_file.is_file()]
    return max(candidates, key=lambda b: b.log_file.stat().st_mtime, default=broker)


def _cluster_up(port: int | None, secure: bool, nodes: int) -> None:
    if secure:
        raise Usage("--secure runs on a single node: drop --nodes, or --secure")
    settings = settings_for(port)
    if settings.kafka_bootstrap:
        say(f"MBS_KAFKA_BOOTSTRAP is set: using the existing cluster at {settings.bootstrap}")
        return
    if settings.broker_port > highest_base(nodes):
        raise Usage(
            f"{nodes} nodes take ports {settings.broker_port}-"
            f"{settings.broker_port + 2 * nodes - 1}: the base port must be at most "
            f"{highest_base(nodes)}"
        )
    if LocalBroker.on_port(settings, None).status().running:
        raise Usage(
            f"a single broker runs on {settings.broker_port}: stop it with "
            f"`mbs broker down --port {settings.broker_port}` or pick another --port"
        )
    cluster = LocalCluster(settings, nodes)
    cluster.up(progress=say)
    say(f"Kafka {nodes}-node cluster running; bootstrap [bold]{cluster.bootstrap}[/]")
    print(cluster.bootstrap)


def _cluster_status(cluster: LocalCluster, output: Format) -> None:
    nodes = cluster.status()
    running = sum(1 for n in nodes if n.running)
    data: dict[str, Any] = {
        "state": "running" if running == len(nodes) else "degraded" if running else "stopped",
        "mode": "cluster",
        "version": KAFKA_VERSION,
        "bootstrap": cluster.bootstrap,
        "running": running,
        "nodes": [
            {
                "node": n.node,
                "state": "running" if n.running else "stopped",
                "address": n.address,
                "controller": n.controller,
                "pid": n.pid,
                "data_dir": str(n.data_dir),
                "log": str(n.log_file),
            }
            for n in nodes
        ],
    }

    def render() -> list[Table]:
        head = Table(show_header=False, box=None)
        head.add_row("state", f"{data['state']} ({running}/{len(nodes)} nodes)")
        head.add_row("version", KAFKA_VERSION)
        head.add_row("bootstrap", cluster.bootstrap)
        table = Table("node", "state", "address", "controller", "pid", "data dir")
        for n in nodes:
            state = "[green]running[/]" if n.running else "[red]stopped[/]"
            table.add_row(
                str(n.node), state, n.address, n.controller, str(n.pid or "-"), str(n.data_dir)
            )
        return [head, table]

    emit(output, data, render)
    if not running:
        raise typer.Exit(Exit.NOT_RUNNING)
