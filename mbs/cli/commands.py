"""The `mbs` command line: local broker, unit and gateway processes, the demo."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.logging import RichHandler
from rich.table import Table

from mbs.broker.local import LocalBroker
from mbs.cli import console as mbs_console
from mbs.cli import reports
from mbs.cli.contracts import app as contracts_app
from mbs.cli.new import app as new_app
from mbs.errors import MbsError
from mbs.settings import Settings, get_settings
from mbs.telemetry import tracing
from mbs.unit.ecosystem import load_ecosystem

console = mbs_console.stderr()
app = typer.Typer(
    help="Micro Business Services: run units, the gateway and a local Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
broker_app = typer.Typer(
    help="A local Apache Kafka 3.9.1 (KRaft, one node, 127.0.0.1).", no_args_is_help=True
)
run_app = typer.Typer(
    help="Run one process of the ecosystem in the foreground.", no_args_is_help=True
)
app.add_typer(broker_app, name="broker")
app.add_typer(run_app, name="run")
app.add_typer(contracts_app, name="contracts")
app.command("scorecard")(reports.scorecard)
app.command("make-or-buy")(reports.make_or_buy)
app.command("ledger")(reports.ledger)
app.add_typer(new_app, name="new")

SecureOption = Annotated[
    bool, typer.Option("--secure", help="SASL/SCRAM with ACLs: one principal per unit.")
]
PortOption = Annotated[
    int | None, typer.Option("--port", help="Broker port [env: MBS_BROKER_PORT, default 9092].")
]


def _settings(port: int | None = None) -> Settings:
    settings = get_settings()
    return settings.model_copy(update={"broker_port": port}) if port else settings


def _say(message: str) -> None:
    console.print(f"[dim]mbs[/] {message}")


def _local_broker(port: int | None, secure: bool = False) -> LocalBroker | None:
    settings = _settings(port)
    if settings.kafka_bootstrap:
        _say(f"MBS_KAFKA_BOOTSTRAP is set: using the existing cluster at {settings.bootstrap}")
        return None
    return LocalBroker(settings, secure=secure)


@broker_app.command("up")
def broker_up(port: PortOption = None, secure: SecureOption = False) -> None:
    """Start the broker (fetching the jars on first use); returns once it accepts connections.
    With --secure: also topics, a principal and ACLs per unit, credentials saved 0600."""
    broker = _local_broker(port, secure)
    if broker is not None:
        status = broker.up(progress=_say)
        if secure:
            from mbs.broker.provision import provision_ecosystem

            contracts = load_ecosystem().contracts()
            provision_ecosystem(broker, _settings(port), contracts, _say)
        _say(f"Kafka {status.version} running on [bold]{status.address}[/] (pid {status.pid})")


@broker_app.command("down")
def broker_down(port: PortOption = None, secure: SecureOption = False) -> None:
    """Stop the broker and wait until its java process is gone."""
    broker = _local_broker(port, secure)
    if broker is not None:
        broker.down(progress=_say)


@broker_app.command("status")
def broker_status(port: PortOption = None, secure: SecureOption = False) -> None:
    """Tell whether the broker runs, its version, address and data directory (exit 3 if not)."""
    broker = _local_broker(port, secure)
    if broker is None:
        return
    status = broker.status()
    table = Table(show_header=False, box=None)
    table.add_row("state", "[green]running[/]" if status.running else "[red]stopped[/]")
    table.add_row("version", status.version)
    table.add_row("address", status.address)
    table.add_row("pid", str(status.pid or "-"))
    table.add_row("data dir", str(status.data_dir))
    table.add_row("log", str(status.log_file))
    mbs_console.stdout().print(table)
    if not status.running:
        raise typer.Exit(3)


@broker_app.command("logs")
def broker_logs(
    port: PortOption = None,
    secure: SecureOption = False,
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many lines.")] = 50,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing.")] = False,
) -> None:
    """Print the broker's log (the last N lines; -f to follow)."""
    broker = _local_broker(port, secure)
    if broker is None:
        return
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


@run_app.command("unit")
def run_unit(name: Annotated[str, typer.Argument(help="Unit name, e.g. pricing.")]) -> None:
    """Serve one unit's capabilities until SIGINT or SIGTERM."""
    from mbs.unit.hosting import open_unit, serve_unit

    configure_logging()
    settings = get_settings()
    ecosystem = load_ecosystem()
    unit = open_unit(ecosystem, name, settings)
    asyncio.run(serve_unit(unit, settings, port=ecosystem.ports.get(name, 0)))


@run_app.command("gateway")
def run_gateway(
    host: Annotated[str | None, typer.Option(help="[env: MBS_GATEWAY_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="[env: MBS_GATEWAY_PORT]")] = None,
) -> None:
    """Serve the gateway's HTTP API until SIGINT or SIGTERM."""
    import uvicorn

    configure_logging()
    settings = get_settings()
    tracing.setup_tracing("mbs-gateway")
    uvicorn.run(
        load_ecosystem().gateway_app(settings),
        host=host or settings.gateway_host,
        port=port or settings.gateway_port,
        log_level="warning",
    )


partners_app = typer.Typer(help="Partner companies: onboarding.", no_args_is_help=True)
app.add_typer(partners_app, name="partners")


@partners_app.command("add")
def partners_add(
    name: Annotated[str, typer.Argument(help="The partner unit, e.g. fastship.")],
    contract: Annotated[
        Path | None, typer.Option(help="Its contract JSON [default: contracts/partners/NAME.json].")
    ] = None,
    port: PortOption = None,
) -> None:
    """Onboard a partner on the secure broker: contract registered, principal, topics and ACLs
    created; the credentials are printed once."""
    from mbs.broker.provision import add_partner
    from mbs.contract.registry import load_contract_file

    path = contract or Path("contracts/partners") / f"{name}.json"
    if not path.is_file():
        raise MbsError(f"no contract file {path}; pass --contract FILE")
    offered = load_contract_file(path.read_text(), str(path))
    if {c.unit for c in offered} != {name}:
        raise MbsError(f"{path} declares units {sorted({c.unit for c in offered})}, not {name!r}")
    broker = _local_broker(port, secure=True)
    if broker is None or not broker.status().running:
        raise MbsError(
            "partners are onboarded on the secure local broker: `mbs broker up --secure`"
        )
    credentials = add_partner(broker, _settings(port), offered)
    _say(f"partner {name} onboarded: {', '.join(c.request_topic for c in offered)}")
    print(f"MBS_KAFKA_USERNAME={credentials.username}")
    print(f"MBS_KAFKA_PASSWORD={credentials.password}")
    _say("keep these now: the password is not shown again")


@app.command("units")
def list_units() -> None:
    """List the units this checkout can run, with their capabilities."""
    ecosystem = load_ecosystem()
    table = Table("unit", "capability", "version", "owner", "price/call", "request topic")
    for name in ecosystem.unit_names():
        for binding in ecosystem.load_unit(name).bindings:
            c = binding.contract
            table.add_row(
                name,
                c.capability,
                c.version,
                c.owner,
                f"{c.pricing.price_per_call} {c.pricing.currency}",
                c.request_topic,
            )
    mbs_console.stdout().print(table)


@app.command("demo")
def demo(
    journeys: Annotated[int, typer.Option(help="How many sample orders to run.")] = 6,
    secure: SecureOption = False,
) -> None:
    """Start Kafka, the units and the gateway; run journeys; show results and bills; clean up."""
    from mbs.cli.demo import run_demo

    ecosystem = load_ecosystem()
    sys.exit(run_demo(ecosystem, get_settings(), journeys=journeys, say=_say, secure=secure))


def configure_logging() -> None:
    """Log as `mbs run` processes do: level from MBS_LOG_LEVEL, aiokafka quiet."""
    logging.basicConfig(
        level=os.environ.get("MBS_LOG_LEVEL", "INFO").upper(),
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def main() -> None:
    """Entry point; platform errors become one readable line and exit code 2."""
    try:
        app()
    except MbsError as exc:
        console.print(f"[red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
