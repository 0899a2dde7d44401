"""The `mbs` command line: every command group in the order a user needs them (run, broker,
contracts, partners, reports), `--version`, `-h`, and one table of exit codes."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from mbs import wire as h
from mbs.broker import KAFKA_VERSION
from mbs.cli import reports, up, upview
from mbs.cli.broker import app as broker_app
from mbs.cli.common import PortOption, SecureOption, console, local_broker, say, settings_for
from mbs.cli.contracts import app as contracts_app
from mbs.cli.deploy import app as deploy_app
from mbs.cli.exits import Exit, NotRunning, Usage, code_for
from mbs.cli.logs import configure_command_logging, configure_logging
from mbs.cli.new import app as new_app
from mbs.cli.output import Format, OutputOption, emit
from mbs.cli.serve import app as run_app
from mbs.errors import MbsError
from mbs.unit.ecosystem import load_ecosystem

RUN, BROKER, CONTRACTS, PARTNERS, REPORTS = "Run", "Broker", "Contracts", "Partners", "Reports"
DEPLOY = "Deploy"
# What a user does first comes first: try it, run it, then the broker, contracts, partners
# and what the gateway measured.
ORDER = (
    "demo",
    "up",
    "ps",
    "logs",
    "down",
    "run",
    "units",
    "new",
    "broker",
    "contracts",
    "partners",
    "scorecard",
    "make-or-buy",
    "ledger",
    "deploy",
)


class _InOrder(TyperGroup):
    """Lists commands (so help panels) in ORDER, not commands first and groups after."""

    def list_commands(self, ctx: Any) -> list[str]:  # typer's own vendored click Context
        found = super().list_commands(ctx)
        return sorted(found, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))


app = typer.Typer(
    cls=_InOrder,
    help="Micro Business Services: run units, the gateway and a local Kafka.\n\n"
    "Exit codes: 0 ok, 1 a check failed or nothing was found, 2 usage (bad option, argument "
    "or input file), 3 platform error (Kafka, broker, gateway or a tool unreachable), 4 the "
    "local broker (or `mbs up`) is not running, 130 interrupted.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
partners_app = typer.Typer(help="Partner companies: onboarding.", no_args_is_help=True)


def version() -> str:
    """This package's version and the Kafka it runs."""
    try:
        found = metadata.version("micro-business-services")
    except metadata.PackageNotFoundError:
        found = "unknown"
    return f"mbs {found} (Apache Kafka {KAFKA_VERSION})"


def _show_version(asked: bool) -> None:
    if asked:
        print(version())
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool | None,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = None,
) -> None:
    """Micro Business Services: run units, the gateway and a local Kafka."""


@app.command("demo", rich_help_panel=RUN)
def demo(
    journeys: Annotated[int, typer.Option(min=1, help="How many sample orders to run.")] = 6,
    secure: SecureOption = False,
) -> None:
    """Start Kafka, the units and the gateway; run journeys; show results and bills; clean up."""
    from mbs.cli.demo import run_demo

    ecosystem = load_ecosystem()
    settings = settings_for()
    sys.exit(run_demo(ecosystem, settings, journeys=journeys, say=say, secure=secure))


app.command("up", rich_help_panel=RUN)(up.up)
app.command("ps", rich_help_panel=RUN)(upview.ps)
app.command("logs", rich_help_panel=RUN)(upview.logs)
app.command("down", rich_help_panel=RUN)(up.down)
app.add_typer(run_app, name="run", rich_help_panel=RUN)


@app.command("units", rich_help_panel=RUN)
def list_units(output: OutputOption = Format.table) -> None:
    """List the units this checkout can run, with their capabilities."""
    ecosystem = load_ecosystem()
    rows: list[dict[str, Any]] = [
        {
            "unit": name,
            "capability": c.capability,
            "version": c.version,
            "owner": c.owner,
            "kind": c.kind,
            "price_per_call": str(c.pricing.price_per_call),
            "currency": c.pricing.currency,
            "request_topic": c.request_topic,
            "ops_port": ecosystem.ports.get(name),
        }
        for name in ecosystem.unit_names()
        for c in (b.contract for b in ecosystem.load_unit(name).bindings)
    ]

    def render() -> list[Table]:
        table = Table("unit", "capability", "version", "owner", "price/call", "request topic")
        for r in rows:
            price = f"{r['price_per_call']} {r['currency']}"
            cells = (r["unit"], r["capability"], r["version"], r["owner"], price)
            table.add_row(*cells, r["request_topic"])
        return [table]

    emit(output, rows, render)


app.add_typer(new_app, name="new", rich_help_panel=RUN)
app.add_typer(broker_app, name="broker", rich_help_panel=BROKER)
app.add_typer(contracts_app, name="contracts", rich_help_panel=CONTRACTS)
app.add_typer(partners_app, name="partners", rich_help_panel=PARTNERS)
app.command("scorecard", rich_help_panel=REPORTS)(reports.scorecard)
app.command("make-or-buy", rich_help_panel=REPORTS)(reports.make_or_buy)
app.command("ledger", rich_help_panel=REPORTS)(reports.ledger)
app.add_typer(deploy_app, name="deploy", rich_help_panel=DEPLOY)


@partners_app.command("add")
def partners_add(
    name: Annotated[str, typer.Argument(help="The partner unit, e.g. fastship.")],
    contract: Annotated[
        Path | None,
        typer.Option(
            help="Its contract JSON (default: contracts/partners/NAME.json).", show_default=False
        ),
    ] = None,
    port: PortOption = None,
) -> None:
    """Onboard a partner on the secure broker: contract registered, principal, topics and ACLs
    created; the credentials are printed once."""
    from mbs.broker.provision import add_partner
    from mbs.contract.partner_wire import UNIT_GROUP_PREFIX
    from mbs.contract.registry import load_contract_file

    path = contract or Path("contracts/partners") / f"{name}.json"
    if not path.is_file():
        raise Usage(f"no contract file {path}; pass --contract FILE")
    try:
        offered = load_contract_file(path.read_text(), str(path))
    except MbsError as exc:
        raise Usage(str(exc)) from None
    if {c.unit for c in offered} != {name}:
        raise Usage(f"{path} declares units {sorted({c.unit for c in offered})}, not {name!r}")
    broker = local_broker(port, secure=True)
    if broker is None or not broker.status().running:
        raise NotRunning(
            "partners are onboarded on the secure local broker: `mbs broker up --secure`"
        )
    credentials = add_partner(broker, settings_for(port), offered)
    say(f"partner {name} onboarded: {', '.join(c.request_topic for c in offered)}")
    say(
        f"consume as {credentials.username!r} (SASL/SCRAM-SHA-256) in consumer groups whose id "
        f"starts with {UNIT_GROUP_PREFIX.format(unit=name)!r}; reply on {h.reply_topic(name)}"
    )
    print(f"MBS_KAFKA_USERNAME={credentials.username}")
    print(f"MBS_KAFKA_PASSWORD={credentials.password}")
    say("keep these now: the password is not shown again")


def _settings_problem(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        field = "_".join(str(p) for p in problem["loc"]).upper()
        lines.append(f"  MBS_{field}: {problem['msg']}")
    return "invalid settings in the environment:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> Any:
    """Entry point: a platform error is one readable line and its exit code (see Exit)."""
    configure_command_logging()
    try:
        app(args=argv)
    except MbsError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(code_for(exc))
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        console.print(f"[red]error:[/] {escape(_settings_problem(exc))}", highlight=False)
        sys.exit(Exit.USAGE)


__all__ = ["app", "configure_logging", "main", "version"]

if __name__ == "__main__":
    main()
