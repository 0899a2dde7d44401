"""`mbs broker up|down|status|logs`: the local Kafka broker, plain or secure, on one port."""

from __future__ import annotations

import os
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from mbs.broker import LocalBroker
from mbs.cli.common import ModeOption, PortOption, SecureOption, local_broker, say, settings_for
from mbs.cli.exits import Exit
from mbs.cli.output import Format, OutputOption, emit
from mbs.unit.ecosystem import load_ecosystem

app = typer.Typer(
    help="A local Apache Kafka 3.9.1 (KRaft, one node, 127.0.0.1).", no_args_is_help=True
)


@app.command("up")
def broker_up(port: PortOption = None, secure: SecureOption = False) -> None:
    """Start the broker (fetching the jars on first use); returns once it accepts connections.
    With --secure: also topics, a principal and ACLs per unit, credentials saved 0600; run
    again, it provisions units added since."""
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
    broker = local_broker(port, secure)
    if broker is not None:
        broker.down(progress=say)


@app.command("status")
def broker_status(
    port: PortOption = None, secure: ModeOption = None, output: OutputOption = Format.table
) -> None:
    """Whether a broker runs on the port (plain or secure), its version, address and data
    directory; exit 4 when none runs."""
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
) -> None:
    """Print the broker's log (the last N lines; -f to follow); exit 4 if there is none."""
    broker = local_broker(port, secure)
    if broker is None:
        return
    if secure is None and not broker.status().running:
        broker = _latest_log(broker)
    if not broker.log_file.is_file():
        say(f"no broker has run on {broker.address} here yet (no {broker.log_file})")
        raise typer.Exit(Exit.NOT_RUNNING)
    for line in broker.logs(lines):
        print(line)
    if follow:
        with broker.log_file.open() as log:
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
