"""Check, after the fact, that the platform kept its promises: every accepted run finished,
no order charged twice, every live charge kept by a completed run, stock conserved, every
failed run compensated, the journey log and the units' books in agreement, every bill at
contract prices.

    .venv/bin/python -m bench.invariants --journeys-topic T --state-dir D \\
        [--accepted FILE] [--start-stock FILE] [--json OUT]

It reads only what the platform wrote (the journey log topic, the units' SQLite files,
read-only) plus the contracts' prices; it prints a table and exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.invariant_rules import RULES, Evidence, Finding
from bench.journey_log import read_journey_log
from bench.unit_books import Books
from contracts import all_contracts
from mbs.settings import Settings
from services.inventory.handlers import OPENING_STOCK

SHOWN_PER_RULE = 5


def contract_terms() -> tuple[dict[tuple[str, str], Decimal], frozenset[str]]:
    """Each provider's declared price per call, and the capabilities that have an undo."""
    found = all_contracts()
    prices = {(c.capability, c.unit): c.pricing.price_per_call for c in found}
    return prices, frozenset(c.capability for c in found if c.compensation)


def opening_stock() -> dict[str, int]:
    """What a fresh inventory store starts from (when the driver recorded nothing else)."""
    return dict(OPENING_STOCK)


def read_accepted(path: Path | None) -> list[str]:
    """Run ids, one a line: a bare id or a JSON object with `run_id`."""
    if path is None:
        return []
    found = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line:
            found.append(str(json.loads(line)["run_id"]) if line.startswith("{") else line)
    return found


def check(evidence: Evidence) -> list[Finding]:
    return [rule(evidence) for rule in RULES]


def evidence_from(
    runs: dict[str, dict[str, Any]],
    state_dir: Path,
    accepted: list[str],
    start_stock: dict[str, int],
    unreadable: list[str] | None = None,
    regressions: list[str] | None = None,
) -> Evidence:
    prices, compensable = contract_terms()
    return Evidence(
        runs=runs,
        books=Books.read(state_dir),
        accepted=accepted,
        start_stock=start_stock,
        prices=prices,
        compensable=compensable,
        unreadable=unreadable or [],
        regressions=regressions or [],
    )


def violations(findings: list[Finding]) -> int:
    return sum(len(f.violations) for f in findings)


def render(findings: list[Finding], console: Console | None = None) -> None:
    """The table (invariant, checked, violations, example), then the first few violations
    of each broken invariant in full."""
    console = console or Console(width=160)
    table = Table(title="Invariants")
    for column in ("invariant", "checked", "violations", "example"):
        table.add_column(column, justify="right" if column in ("checked", "violations") else "left")
    for f in findings:
        style = "red" if f.violations else "green"
        example = f.violations[0] if f.violations else ""
        table.add_row(
            f.invariant, str(f.checked), f"[{style}]{len(f.violations)}[/]", example[:110]
        )
    console.print(table)
    for f in findings:
        for line in f.violations[:SHOWN_PER_RULE]:
            console.print(f"[red]{f.invariant}[/]: {line}", soft_wrap=True)
        if len(f.violations) > SHOWN_PER_RULE:
            console.print(f"  ... and {len(f.violations) - SHOWN_PER_RULE} more")


def as_json(findings: list[Finding]) -> list[dict[str, Any]]:
    return [
        {"invariant": f.invariant, "checked": f.checked, "violations": f.violations}
        for f in findings
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.invariants",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--journeys-topic", required=True, help="The journey log topic.")
    parser.add_argument(
        "--state-dir", type=Path, required=True, help="MBS_UNIT_STATE_DIR of the units."
    )
    parser.add_argument(
        "--accepted", type=Path, help="Run ids the driver was given (one a line, or JSON lines)."
    )
    parser.add_argument(
        "--start-stock",
        type=Path,
        help="JSON {sku: units} on hand before the run (default: the opening stock).",
    )
    parser.add_argument(
        "--bootstrap", help="Kafka bootstrap (default: MBS_KAFKA_BOOTSTRAP or 127.0.0.1:9092)."
    )
    parser.add_argument("--json", type=Path, help="Also write the findings here.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bootstrap = args.bootstrap or Settings().bootstrap
    log = asyncio.run(read_journey_log(bootstrap, args.journeys_topic))
    stock = (
        {k: int(v) for k, v in json.loads(args.start_stock.read_text()).items()}
        if args.start_stock
        else opening_stock()
    )
    accepted = read_accepted(args.accepted)
    evidence = evidence_from(
        log.runs, args.state_dir, accepted, stock, log.unreadable, log.regressions
    )
    findings = check(evidence)
    render(findings)
    if args.json:
        args.json.write_text(json.dumps(as_json(findings), indent=2))
    return 1 if violations(findings) else 0


if __name__ == "__main__":
    sys.exit(main())
