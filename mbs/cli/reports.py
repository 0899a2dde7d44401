"""`mbs scorecard` and `mbs make-or-buy`: what the gateway measured, as tables and a verdict."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from mbs.cli import console
from mbs.errors import MbsError
from mbs.settings import get_settings

MIN_EVIDENCE = 20
GatewayOption = Annotated[
    str | None, typer.Option("--gateway", help="Gateway URL [env: MBS_GATEWAY_URL].")
]


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


def scorecard(gateway: GatewayOption = None) -> None:
    """Each unit's calls, errors, latency against its SLA, revenue, cost and margin."""
    data = fetch("/scorecard", gateway)
    table = Table(title="Unit scorecards (as seen by the gateway)")
    for column in (
        "unit",
        "capability",
        "calls",
        "error rate",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "SLA p99",
        "in SLA",
        "availability",
        "SLA met",
        "revenue",
        "cost",
        "margin",
    ):
        table.add_column(column, no_wrap=column in ("unit", "capability"))
    for unit in data["units"]:
        for row in unit["capabilities"]:
            table.add_row(
                unit["unit"],
                row["capability"],
                str(row["calls"]),
                _cell(row["error_rate"]),
                _cell(row["p50_ms"]),
                _cell(row["p95_ms"]),
                _cell(row["p99_ms"]),
                _cell(row["sla_p99_ms"]),
                _cell(row["latency_attainment"]),
                f"{_cell(row['availability'])} / {row['sla_availability']}",
                "[green]yes[/]" if row["sla_met"] else "[red]no[/]",
                row["revenue"],
                row["cost"],
                row["margin"],
            )
    console.stdout().print(table)


def make_or_buy(
    capability: Annotated[str, typer.Argument(help="e.g. shipping.book")],
    gateway: GatewayOption = None,
) -> None:
    """The providers of CAPABILITY side by side, and whether to move traffic."""
    data = fetch("/scorecard", gateway)
    found = next((c for c in data["capabilities"] if c["capability"] == capability), None)
    if found is None:
        known = ", ".join(c["capability"] for c in data["capabilities"]) or "none yet"
        raise MbsError(f"the gateway has no traffic for {capability!r} (measured: {known})")
    units = {u["unit"]: u for u in fetch("/units", gateway)}
    table = Table(title=f"Make or buy: {capability}")
    for column in (
        "provider",
        "kind",
        "price/call",
        "calls",
        "p50 ms",
        "p99 ms",
        "SLA p99",
        "error rate",
        "shadow agreement",
        "shadow comparisons",
    ):
        table.add_column(column, no_wrap=column == "provider")
    for row in found["providers"]:
        table.add_row(
            row["unit"],
            units.get(row["unit"], {}).get("kind", "?"),
            _cell(row["price_per_call"]),
            str(row["calls"]),
            _cell(row["p50_ms"]),
            _cell(row["p99_ms"]),
            _cell(row["sla_p99_ms"]),
            _cell(row["error_rate"]),
            _cell(row["shadow_agreement"]),
            str(row["shadow_comparisons"]),
        )
    out = console.stdout()
    out.print(table)
    out.print(verdict(found["providers"], units))


def verdict(providers: list[dict[str, Any]], units: dict[str, dict[str, Any]]) -> str:
    """Buy when a partner is cheaper, within its SLA, no less reliable, and agrees in shadow."""
    kind = {name: u.get("kind") for name, u in units.items()}
    inside = [p for p in providers if kind.get(p["unit"]) == "internal"]
    outside = [p for p in providers if kind.get(p["unit"]) == "partner"]
    if not inside or not outside:
        return "verdict: nothing to compare (needs an in-house and a partner provider)"
    make, buy = inside[0], min(outside, key=lambda p: float(p["price_per_call"] or "inf"))
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


def ledger(gateway: GatewayOption = None) -> None:
    """What each partner earned (we owe it) and each internal unit charged, per hour."""
    rows = fetch("/ledger", gateway)
    table = Table(title="Ledger (metered from replies the gateway received)")
    for column in ("period", "unit", "kind", "calls", "charged", "settlement"):
        table.add_column(column)
    for row in rows:
        owed = "we pay" if row["kind"] == "partner" else "internal charge"
        table.add_row(
            row["period"], row["unit"], row["kind"], str(row["calls"]), row["charged"], owed
        )
    console.stdout().print(table)
