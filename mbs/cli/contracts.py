"""`mbs contracts ...`: the registry and the published artefacts, from the command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.syntax import Syntax
from rich.table import Table

from mbs.cli import console
from mbs.contract.compat import check_contract
from mbs.contract.model import Contract
from mbs.contract.registry import Registry, RegistryView, load_contract_file
from mbs.errors import ContractRefused, MbsError
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
    return load_contract_file(path.read_text(), str(path))


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
def list_contracts() -> None:
    """Every provider's newest contract, as the registry on the broker holds them."""
    current = _view().current()
    if not current:
        err.print(
            "the registry is empty: units register on start, or run "
            "`mbs contracts register --ecosystem`"
        )
        raise typer.Exit(1)
    out.print(_table(current, f"{len(current)} contracts in mbs.contracts"))


@app.command("show")
def show(capability: Annotated[str, typer.Argument(help="e.g. shipping.book")]) -> None:
    """The newest contract of each provider of CAPABILITY, in full, plus its history."""
    view = _view()
    latest = view.latest(capability)
    if not latest:
        known = sorted({c.capability for c in view.by_key.values()})
        raise MbsError(f"no contract for {capability!r}; registered: {', '.join(known)}")
    for contract in latest:
        versions = ", ".join(c.version for c in view.history(capability, contract.unit))
        out.rule(f"{contract.key} by {contract.unit} (versions: {versions})")
        out.print(Syntax(contract.model_dump_json(indent=2), "json"))


@app.command("check")
def check(path: FileArg) -> None:
    """Validate a contract file and check it against the registry; exit 1 if it breaks."""
    view = _view()
    broken = False
    for contract in _read(path):
        reasons = view.check(contract)
        if reasons:
            broken = True
            err.print(f"[red]incompatible[/] {contract.key} ({contract.unit}):")
            for reason in reasons:
                err.print(f"  {reason.path}: {reason.reason}")
        else:
            err.print(f"[green]ok[/] {contract.key} ({contract.unit})")
    if broken:
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
    old: Annotated[Path, typer.Argument(help="The old contract JSON.", exists=True)],
    new: Annotated[Path, typer.Argument(help="The new contract JSON.", exists=True)],
) -> None:
    """What changed between two contract files and whether it is compatible (exit 1 if not)."""
    [before], [after] = _read(old), _read(new)
    changed = _changed_fields(before, after)
    for name in changed:
        out.print(f"[yellow]~[/] {name}")
    reasons = check_contract(before, after)
    for reason in reasons:
        out.print(f"[red]x[/] {reason.path}: {reason.reason}")
    verdict = "[red]incompatible[/]" if reasons else "[green]compatible[/]"
    out.print(
        f"{before.key} -> {after.key}: {len(changed)} field(s) changed, {verdict} "
        f"under {after.compatibility}"
    )
    if reasons:
        raise typer.Exit(1)


def _changed_fields(before: Contract, after: Contract) -> list[str]:
    a, b = json.loads(before.model_dump_json()), json.loads(after.model_dump_json())
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


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
) -> None:
    """Verify that a RUNNING unit honours its contracts; exit 1 on any violation."""
    from mbs.contract import conformance

    if (unit is None) == (contract is None):
        raise typer.BadParameter("give --unit NAME or --contract FILE (one of the two)")
    if contract is not None:
        contracts = _read(contract)
    else:
        bindings = load_ecosystem().load_unit(str(unit)).bindings
        contracts = [binding.contract.as_contract() for binding in bindings]
    connection = Connection.from_settings(get_settings())
    report = asyncio.run(
        conformance.verify(contracts, connection, samples=samples, timeout_s=timeout)
    )
    for table in conformance.render(report):
        out.print(table)
    if not report.passed:
        err.print(f"[red]{len(report.violations)} violations[/]: {report.unit} is not certified")
        raise typer.Exit(1)
    if record:
        topic = get_settings().certifications_topic
        keys = asyncio.run(
            conformance.record_certification(report, contracts, connection, topic=topic)
        )
        err.print(f"[green]certified[/] {', '.join(keys)} in {topic}")
