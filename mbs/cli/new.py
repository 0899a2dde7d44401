"""`mbs new ...`: scaffold new parts of the ecosystem from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mbs.cli import console
from mbs.cli.scaffold import UnitPlan, plan_unit, scaffold_unit

app = typer.Typer(help="Scaffold new parts of the ecosystem.", no_args_is_help=True)
err = console.stderr()


@app.callback()
def _new() -> None:
    """Scaffold new parts of the ecosystem."""


@app.command("unit")
def new_unit(
    name: Annotated[str, typer.Argument(help="Unit name: lower-case letters, digits and '_'.")],
    capability: Annotated[
        str | None,
        typer.Option(help="DOMAIN.ACTION it serves (default: NAME.run).", show_default=False),
    ] = None,
    owner: Annotated[
        str | None, typer.Option(help="Owning team (default: team-NAME).", show_default=False)
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            help="Repository root (default: the current directory).",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Scaffold a unit (contract, handler, wiring, tests), ready for `mbs run unit NAME`."""
    plan = plan_unit(name, capability, owner)
    for path in scaffold_unit(root or Path.cwd(), plan):
        err.print(f"[green]created[/] {path}")
    err.print("\n[bold]next steps[/]")
    steps = _next_steps(plan)
    width = max(len(command) for command in steps)
    for command, why in steps.items():
        err.print(f"  [cyan]{command.ljust(width)}[/]  {why}", highlight=False)


def _next_steps(plan: UnitPlan) -> dict[str, str]:
    return {
        f"mbs run unit {plan.name}": "serve it (after `mbs broker up`)",
        f"pytest tests/unit/test_{plan.name}.py": "its rule, then a round trip in memory",
        "services/__init__.py": (
            f'add "{plan.name}": <port> to PORTS for a fixed ops port (else any free one)'
        ),
        "contracts/__init__.py": (
            f"add {plan.constant} to ECOSYSTEM so `mbs contracts register --ecosystem` sees it"
        ),
    }
