"""`mbs contracts ...`: the registry and the published artefacts, from the command line."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer
from aiokafka.errors import KafkaError
from confluent_kafka import KafkaException
from rich.syntax import Syntax
from rich.table import Table

from mbs.cli import console
from mbs.cli.contracts_diff import diff_files
from mbs.cli.exits import Failed, Usage
from mbs.cli.output import Format, OutputOption, emit
from mbs.contract.model import Contract
from mbs.contract.registry import Registry, RegistryView, load_contract_file
from mbs.errors import BrokerError, ContractRefused, MbsError
from mbs.kafka.connection import Connection
from mbs.settings import get_settings
from mbs.unit.ecosystem import load_ecosystem

app = typer.Typer(
    help="Declared contracts: the registry on `mbs.contracts`, checks, exports.",
    no_args_is_help=True,
)
out = console.stdout()
err = console.stderr()

FileArg = Annotated[
    Path,
    typer.Argument(
        help="A contract as JSON (one object or a list).",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]


def _registry() -> Registry:
    settings = get_settings()
    connection = Connection.from_settings(settings)
    return Registry(connection, client="mbs-cli", topic=settings.contracts_topic)


def _view() -> RegistryView:
    return asyncio.run(_registry().sync())


def _read(path: Path) -> list[Contract]:
    """The contracts of a file the user gave; not JSON, not contracts, or none: usage."""
    try:
        found = load_contract_file(path.read_text(), str(path))
    except MbsError as exc:
        raise Usage(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise Usage(f"{path}: cannot read it ({exc})") from None
    if not found:
        raise Usage(f"{path} holds no contract (an empty list)")
    return found


def _table(contracts: list[Contract], title: str) -> Table:
    table = Table(title=title)
    for column in (
        "capability",
        "version",
        "unit",
        "owner",
        "kind",
        "price/call",
        "cost/call",
        "p99 ms",
        "request topic",
    ):
        table.add_column(column)
    for c in contracts:
        table.add_row(
            c.capability,
            c.version,
            c.unit,
            c.owner,
            c.kind,
            f"{c.pricing.price_per_call} {c.pricing.currency}",
            str(c.pricing.cost_per_call),
            str(c.sla.p99_ms),
            c.request_topic,
        )
    return table


@app.command("list")
def list_contracts(output: OutputOption = Format.table) -> None:
    """Every provider's newest contract, as the registry on the broker holds them (exit 1
    when it is empty)."""
    current = _view().current()
    if not current:
        err.print(
            "the registry is empty: units register on start, or run "
            "`mbs contracts register --ecosystem`"
        )
        raise typer.Exit(1)
    data = [json.loads(c.model_dump_json()) for c in current]
    emit(output, data, lambda: [_table(current, f"{len(current)} contracts in mbs.contracts")])


@app.command("show")
def show(
    capability: Annotated[str, typer.Argument(help="e.g. shipping.book")],
    output: OutputOption = Format.table,
) -> None:
    """The newest contract of each provider of CAPABILITY, in full, plus its history (exit 1
    when none is registered)."""
    view = _view()
    latest = view.latest(capability)
    if not latest:
        known = sorted({c.capability for c in view.by_key.values()})
        raise Failed(f"no contract for {capability!r}; registered: {', '.join(known) or 'none'}")
    if output is Format.json:
        print(json.dumps([json.loads(c.model_dump_json()) for c in latest], indent=2))
        return
    for contract in latest:
        versions = ", ".join(c.version for c in view.history(capability, contract.unit))
        heading = f"{contract.key} by {contract.unit} (versions: {versions})"
        if not sys.stdout.isatty():  # piped: whole lines, nothing cropped to a width
            print(f"== {heading}\n{contract.model_dump_json(indent=2)}")
            continue
        out.rule(heading)
        out.print(Syntax(contract.model_dump_json(indent=2), "json"))


@app.command("check")
def check(path: FileArg, output: OutputOption = Format.table) -> None:
    """Validate a contract file, then check it against the registry; exit 1 if it breaks,
    2 if the file is not a contract file."""
    todo = _read(path)  # before any connection: a bad file needs no broker to be refused
    view = _view()
    results = []
    for contract in todo:
        reasons = view.check(contract)
        results.append(
            {
                "key": contract.key,
                "unit": contract.unit,
                "compatible": not reasons,
                "reasons": [{"path": r.path, "reason": r.reason} for r in reasons],
            }
        )
        if output is Format.json:
            continue
        if reasons:
            err.print(f"[red]incompatible[/] {contract.key} ({contract.unit}):")
            for reason in reasons:
                err.print(f"  {reason.path}: {reason.reason}", markup=False)
        else:
            err.print(f"[green]ok[/] {contract.key} ({contract.unit})")
    if output is Format.json:
        print(json.dumps(results, indent=2))
    if not all(r["compatible"] for r in results):
        raise typer.Exit(1)


@app.command("register")
def register(
    path: Annotated[Path | None, typer.Argument(help="Contract JSON file.")] = None,
    ecosystem: Annotated[bool, typer.Option(help="Register every contract in contracts/.")] = False,
) -> None:
    """Register contracts (refused, with every reason, when a new version breaks)."""
    if (path is None) == (not ecosystem):
        raise typer.BadParameter("give a contract FILE or --ecosystem (one of the two)")
    if ecosystem:
        todo = load_ecosystem().contracts()
    else:
        assert path is not None
        todo = _read(path)
    try:
        written = asyncio.run(_registry().register(todo))
    except ContractRefused as refused:
        err.print(f"[red]refused[/] {refused}")
        raise typer.Exit(1) from None
    err.print(f"registered {len(written)} new, {len(todo) - len(written)} already there")


@app.command("export")
def export(directory: Annotated[Path, typer.Argument(help="e.g. contracts/published")]) -> None:
    """Write AsyncAPI 3.0 per unit and plain JSON Schemas for every ecosystem contract."""
    from mbs.contract.asyncapi import export as write

    paths = write(directory, load_ecosystem().contracts())
    err.print(f"wrote {len(paths)} files under {directory}")


@app.command("diff")
def diff(
    old: Annotated[Path, typer.Argument(help="The old contract file.", exists=True)],
    new: Annotated[Path, typer.Argument(help="The new contract file.", exists=True)],
    output: OutputOption = Format.table,
) -> None:
    """What changed between two contract files (one contract or a list each: contracts are
    paired by unit and capability) and whether it is compatible (exit 1 if not). A contract
    the new file drops is incompatible: its callers lose it."""
    report = diff_files(_read(old), _read(new))
    if output is Format.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        for line in report.lines():
            out.print(line, highlight=False)
    if not report.compatible:
        raise typer.Exit(1)


@app.command("verify")
def verify(
    unit: Annotated[str | None, typer.Option(help="A unit of this checkout, e.g. pricing.")] = None,
    contract: Annotated[
        Path | None,
        typer.Option(help="A contract JSON file, for a unit not in this checkout.", exists=True),
    ] = None,
    samples: Annotated[int, typer.Option(min=1, help="Valid requests drawn per capability.")] = 30,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for each reply.")] = 5.0,
    record: Annotated[
        bool, typer.Option(help="On success, record the certification in mbs.certifications.")
    ] = True,
    output: OutputOption = Format.table,
) -> None:
    """Verify that a RUNNING unit honours its contracts; exit 1 on any violation."""
    from mbs.contract import conformance

    if (unit is None) == (contract is None):
        raise typer.BadParameter("give --unit NAME or --contract FILE (one of the two)")
    if contract is not None:
        contracts = _read(contract)
    else:
        ecosystem = load_ecosystem()
        if unit not in ecosystem.unit_names():
            raise Usage(f"no unit named {unit!r}; known: {', '.join(ecosystem.unit_names())}")
        bindings = ecosystem.load_unit(str(unit)).bindings
        contracts = [binding.contract.as_contract() for binding in bindings]
    connection = Connection.from_settings(get_settings())
    report = asyncio.run(
        conformance.verify(contracts, connection, samples=samples, timeout_s=timeout)
    )
    data = {
        "unit": report.unit,
        "passed": report.passed,
        "samples": report.samples,
        "results": [
            {
                "capability": r.capability,
                "version": r.version,
                "sent": r.sent,
                "passed": r.passed,
                "p50_ms": r.p50_ms,
                "p99_ms": r.p99_ms,
                "sla_p99_ms": r.sla_p99_ms,
            }
            for r in report.results
        ],
        "violations": [dataclasses.asdict(v) for v in report.violations],
    }
    emit(output, data, lambda: conformance.render(report))
    if not report.passed:
        err.print(f"[red]{len(report.violations)} violations[/]: {report.unit} is not certified")
        raise typer.Exit(1)
    if record:
        topic = get_settings().certifications_topic
        keys = certify(conformance, report, contracts, connection, topic)
        err.print(f"[green]certified[/] {', '.join(keys)} in {topic}")


def certify(
    kit: ModuleType, report: Any, contracts: list[Contract], connection: Connection, topic: str
) -> list[str]:
    """Record the certification; a principal that may not write `topic` is one line naming
    the one that may (units and partners never certify themselves), not a traceback."""
    try:
        keys: list[str] = asyncio.run(
            kit.record_certification(report, contracts, connection, topic=topic)
        )
    except (KafkaError, KafkaException) as exc:
        if "AUTHORIZATION" not in f"{type(exc).__name__} {exc}".upper():
            raise BrokerError(f"recording the certification in {topic} failed: {exc!r}") from exc
        who = connection.username or "anonymous"
        raise BrokerError(
            f"principal {who!r} may not write {topic}: the unit passed, but certifications are "
            "recorded by the platform operator; run `mbs contracts verify` as the broker's admin "
            "principal (MBS_KAFKA_USERNAME=admin, MBS_KAFKA_PASSWORD from the secure broker's "
            "admin.secret under MBS_HOME), or pass --no-record to check only"
        ) from None
    return keys
