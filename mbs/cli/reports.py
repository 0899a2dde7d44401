"""`mbs scorecard`, `mbs make-or-buy` and `mbs ledger`: what the gateway measured, as tables
and a verdict, or as JSON with `-o json`."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from mbs.cli.exits import Failed
from mbs.cli.output import Format, OutputOption, emit
from mbs.errors import MbsError
from mbs.settings import get_settings

MIN_EVIDENCE = 20
GatewayOption = Annotated[
    str | None,
    typer.Option(
        "--gateway",
        help="Gateway URL (env MBS_GATEWAY_URL, default http://127.0.0.1:8080).",
        show_default=False,
    ),
]
MARGIN_NOTE = (
    "margin: revenue (what the unit charged) minus its own cost, for internal units. A "
    "partner's revenue is what we pay it and its cost is its own business, so its margin is "
    "not ours: not shown."
)


def fetch(path: str, gateway: str | None) -> Any:
    """GET a gateway path with the CLI's API key; errors say what to check."""
    settings = get_settings()
    base = gateway or settings.gateway_url
    try:
        response = httpx.get(f"{base}{path}", headers={"X-API-Key": settings.api_key}, timeout=10)
    except httpx.HTTPError as exc:
        raise MbsError(
            f"cannot reach the gateway at {base} ({exc}); start it with "
            "`mbs run gateway` or set MBS_GATEWAY_URL"
        ) from exc
    if response.status_code != 200:
        raise MbsError(f"{path}: HTTP {response.status_code}: {response.text}")
    return response.json()


def _cell(value: Any, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


def _kinds(gateway: str | None) -> dict[str, str]:
    return {u["unit"]: u.get("kind", "?") for u in fetch("/units", gateway)}


def scorecard(gateway: GatewayOption = None, output: OutputOption = Format.table) -> None:
    """Each unit's calls, errors, latency against its SLA, revenue, cost and margin."""
    data = fetch("/scorecard", gateway)
    kinds = _kinds(gateway)
    for unit in data["units"]:
        unit["kind"] = kinds.get(unit["unit"], "?")

    def render() -> list[Table]:
        table = Table(title="Unit scorecards (as seen by the gateway)", caption=MARGIN_NOTE)
        for column in (
            *("unit", "kind", "capability", "calls", "error rate", "p50 ms", "p95 ms"),
            *("p99 ms", "SLA p99", "in SLA", "availability", "SLA met", "revenue", "cost"),
            "margin",
        ):
            table.add_column(column, no_wrap=True)
        for unit in data["units"]:
            partner = unit["kind"] == "partner"
            for row in unit["capabilities"]:
                table.add_row(
                    *(unit["unit"], unit["kind"], row["capability"], str(row["calls"])),
                    *(_cell(row[k]) for k in ("error_rate", "p50_ms", "p95_ms", "p99_ms")),
                    _cell(row["sla_p99_ms"]),
                    _cell(row["latency_attainment"]),
                    f"{_cell(row['availability'])} / {row['sla_availability']}",
                    "[green]yes[/]" if row["sla_met"] else "[red]no[/]",
                    row["revenue"] + (" (we pay)" if partner else ""),
                    "-" if partner else row["cost"],
                    "-" if partner else row["margin"],
                )
        return [table]

    emit(output, data, render)


def make_or_buy(
    capability: Annotated[str, typer.Argument(help="e.g. shipping.book")],
    gateway: GatewayOption = None,
    output: OutputOption = Format.table,
) -> None:
    """The providers of CAPABILITY side by side (every provider the gateway knows, measured
    or not yet), and whether to move traffic."""
    units = {u["unit"]: u for u in fetch("/units", gateway)}
    data = fetch("/scorecard", gateway)
    measured = next((c for c in data["capabilities"] if c["capability"] == capability), None)
    providers = providers_of(capability, units, measured["providers"] if measured else [])
    if not providers:
        known = sorted({c["capability"] for u in units.values() for c in u["capabilities"]})
        raise Failed(f"no provider offers {capability!r} (offered: {', '.join(known)})")
    said = verdict(providers, units)
    rows = [{**p, "kind": units.get(p["unit"], {}).get("kind", "?")} for p in providers]

    def render() -> list[Table | str]:
        table = Table(title=f"Make or buy: {capability}")
        for column in (
            *("provider", "kind", "price/call", "calls", "p50 ms", "p99 ms", "SLA p99"),
            *("error rate", "shadow agreement", "shadow comparisons"),
        ):
            table.add_column(column, no_wrap=True)
        for row in rows:
            table.add_row(
                *(row["unit"], row["kind"], _cell(row["price_per_call"]), str(row["calls"])),
                *(_cell(row[k]) for k in ("p50_ms", "p99_ms", "sla_p99_ms", "error_rate")),
                _cell(row["shadow_agreement"]),
                str(row["shadow_comparisons"]),
            )
        return [table, said]

    emit(output, {"capability": capability, "providers": rows, "verdict": said}, render)


def providers_of(
    capability: str, units: dict[str, dict[str, Any]], measured: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """What the gateway measured of each provider, and an empty row for each provider it
    knows of but has not called or shadowed yet."""
    found = {p["unit"]: p for p in measured}
    for name, unit in sorted(units.items()):
        for offered in unit.get("capabilities", []):
            if offered["capability"] == capability and name not in found:
                found[name] = _unmeasured(name, offered)
    return sorted(found.values(), key=lambda p: (p["calls"] == 0, p["unit"]))


def _unmeasured(unit: str, offered: dict[str, Any]) -> dict[str, Any]:
    return {
        "unit": unit,
        "capability": offered["capability"],
        "calls": 0,
        "error_rate": None,
        "p50_ms": None,
        "p95_ms": None,
        "p99_ms": None,
        "sla_p99_ms": offered.get("p99_ms"),
        "sla_met": True,
        "price_per_call": offered.get("price_per_call"),
        "shadow_agreement": None,
        "shadow_comparisons": 0,
    }


def verdict(providers: list[dict[str, Any]], units: dict[str, dict[str, Any]]) -> str:
    """Buy when a partner is cheaper, within its SLA, no less reliable, and agrees in shadow;
    until both sides have evidence, say what is missing."""
    kind = {name: u.get("kind") for name, u in units.items()}
    inside = [p for p in providers if kind.get(p["unit"]) == "internal"]
    outside = [p for p in providers if kind.get(p["unit"]) == "partner"]
    if not inside or not outside:
        who = "in-house" if inside else "partner"
        return f"verdict: nothing to compare: every provider is {who} (needs one of each)"
    make = max(inside, key=lambda p: p["calls"])
    buy = min(outside, key=lambda p: float(p["price_per_call"] or "inf"))
    if make["calls"] == 0:
        return (
            f"verdict: not enough evidence yet: the gateway has no calls of {make['unit']} "
            "(in-house) to compare with; send it traffic"
        )
    evidence = buy["calls"] + buy["shadow_comparisons"]
    if evidence < MIN_EVIDENCE:
        return (
            f"verdict: not enough evidence yet ({evidence} calls or shadow comparisons of "
            f"{buy['unit']}, {MIN_EVIDENCE} needed); give it shadow traffic"
        )
    cheaper = float(buy["price_per_call"]) < float(make["price_per_call"])
    reliable = (buy["error_rate"] or 0) <= (make["error_rate"] or 0) + 0.01
    agrees = buy["shadow_agreement"] is None or buy["shadow_agreement"] >= 0.95
    if cheaper and buy["sla_met"] and reliable and agrees:
        return (
            f"verdict: BUY from {buy['unit']}: cheaper ({buy['price_per_call']} vs "
            f"{make['price_per_call']}), within its SLA and as reliable. Move traffic "
            f"gradually: providers.policy weighted, e.g. {{{buy['unit']}: 0.2, "
            f"{make['unit']}: 0.8}}, then raise it."
        )
    reasons = [
        why
        for ok, why in (
            (cheaper, "not cheaper"),
            (buy["sla_met"], "misses its SLA"),
            (reliable, "less reliable"),
            (agrees, "disagrees in shadow"),
        )
        if not ok
    ]
    return f"verdict: MAKE (keep {make['unit']}): {buy['unit']} is " + ", ".join(reasons)


def ledger(gateway: GatewayOption = None, output: OutputOption = Format.table) -> None:
    """What each partner earned (we owe it) and each internal unit charged, per hour."""
    rows = fetch("/ledger", gateway)
    for row in rows:
        row["settlement"] = "we pay" if row["kind"] == "partner" else "internal charge"

    def render() -> list[Table]:
        table = Table(title="Ledger (metered from replies the gateway received)")
        for column in ("period", "unit", "kind", "calls", "charged", "settlement"):
            table.add_column(column, no_wrap=True)
        for row in rows:
            table.add_row(
                *(row["period"], row["unit"], row["kind"], str(row["calls"]), row["charged"]),
                row["settlement"],
            )
        return [table]

    emit(output, rows, render)
