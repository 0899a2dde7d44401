"""The four dashboards: ecosystem overview, unit scorecard, journey bill, make-or-buy."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence

from mbs.contract.model import Contract
from mbs.dashboards.common import (
    BROKEN,
    CALL_COST,
    COST,
    DLQ,
    FAILED,
    HANDLER,
    JOURNEY,
    JOURNEY_COST,
    JOURNEYS,
    PRICE,
    REQUESTS,
    REVENUE,
    SHADOW,
    SLA_AVAILABILITY,
    SLA_P99,
    STEP,
    Json,
    _contracts,
    _margin,
    _per_call,
    _quantile,
    _rate,
    _ratio,
    _sum,
)
from mbs.dashboards.grafana import _money_unit, dashboard, panel, row, variable

# --- Dashboards ------------------------------------------------------------------------


def _overview_traffic() -> list[Json]:
    return [
        row("Traffic"),
        panel("Requests/s per unit", [(_sum("unit", _rate(REQUESTS)), "{{unit}}")], unit="reqps"),
        panel(
            "Error ratio per unit (failed + invalid)",
            [(_ratio(REQUESTS, "unit", BROKEN), "{{unit}}")],
            unit="percentunit",
            thresholds=[(0.01, "red")],
        ),
        panel(
            "Journeys/s by outcome",
            [(_sum("journey, outcome", _rate(JOURNEYS)), "{{journey}} {{outcome}}")],
            unit="reqps",
        ),
        panel(
            "Dead letters/s per unit",
            [(f"{_sum('unit', _rate(DLQ))} or {_sum('unit', _rate(REQUESTS))} * 0", "{{unit}}")],
            unit="reqps",
            thresholds=[(0.001, "red")],
        ),
    ]


def _overview_money(contracts: Sequence[Contract]) -> list[Json]:
    per_s = _money_unit(contracts, "/s")
    by = "unit, currency"
    return [
        row("Money"),
        panel("Revenue/s per unit", [(_sum(by, _rate(REVENUE)), "{{unit}}")], unit=per_s, width=8),
        panel("Cost/s per unit", [(_sum(by, _rate(COST)), "{{unit}}")], unit=per_s, width=8),
        panel("Margin/s per unit", [(_margin(by), "{{unit}}")], unit=per_s, width=8),
    ]


def _overview_sla() -> list[Json]:
    p99 = _quantile(0.99, HANDLER, "unit, capability")
    return [
        row("SLA"),
        panel(
            "Handler p99 as a share of the contract's p99 SLA (above 1 = breached)",
            [(f"{p99} / on (unit, capability) {SLA_P99}", "{{unit}} {{capability}}")],
            unit="percentunit",
            width=24,
            thresholds=[(1.0, "red")],
        ),
    ]


def ecosystem_overview(contracts: Sequence[Contract] | None = None) -> Json:
    """The whole company at a glance: traffic, errors, money, journeys, dead letters, SLA."""
    found = _contracts(contracts)
    panels = [*_overview_traffic(), *_overview_money(found), *_overview_sla()]
    return dashboard("mbs-ecosystem-overview", "MBS / Ecosystem overview", panels)


def _scorecard_money(contracts: Sequence[Contract], unit: str) -> list[Json]:
    per_s = _money_unit(contracts, "/s")
    stats = [
        ("Revenue/s", _sum("currency", _rate(REVENUE, unit)), "{{currency}}", per_s),
        ("Cost/s", _sum("currency", _rate(COST, unit)), "{{currency}}", per_s),
        ("Margin/s", _margin("currency", unit), "{{currency}}", per_s),
        (
            "Price per billed call",
            _per_call(REVENUE, "capability", unit),
            "{{capability}}",
            _money_unit(contracts),
        ),
    ]
    margin = _margin("capability, currency", unit)
    return [
        row("P&L"),
        *[
            panel(title, [(expr, legend)], unit=money, kind="stat", width=6, height=4)
            for title, expr, legend, money in stats
        ],
        panel("Margin/s by capability", [(margin, "{{capability}}")], unit=per_s, width=24),
    ]


def _scorecard_latency(unit: str) -> list[Json]:
    by = "capability"
    exprs = [(_quantile(q / 100, HANDLER, by, unit), f"p{q} {{{{capability}}}}") for q in (50, 95)]
    exprs += [
        (_quantile(0.99, HANDLER, by, unit), "p99 {{capability}}"),
        (f"max by (capability) ({SLA_P99}{{{unit}}})", "SLA p99 {{capability}}"),
    ]
    p99 = _quantile(0.99, HANDLER, "unit, capability", unit)
    within = f"{p99} <= bool on (unit, capability) {SLA_P99}{{{unit}}}"
    return [
        row("Latency vs SLA"),
        panel("Handler latency p50 / p95 / p99 and the SLA", exprs, unit="s", width=16),
        panel("p99 within SLA (1 = yes)", [(within, "{{capability}}")], kind="stat", width=8),
    ]


def _scorecard_errors(unit: str) -> list[Json]:
    by = "unit, capability"
    availability = f"1 - {_ratio(REQUESTS, by, FAILED, unit)}"
    dlq = f"{_sum('capability, reason', _rate(DLQ, unit))} or "
    dlq += f"{_sum('capability', _rate(REQUESTS, unit))} * 0"
    return [
        row("SLA attainment and errors"),
        panel(
            "Availability (not failed) vs SLA",
            [
                (availability, "availability"),
                (f"max by (unit, capability) ({SLA_AVAILABILITY}{{{unit}}})", "SLA"),
            ],
            unit="percentunit",
            kind="table",
            width=8,
        ),
        panel(
            "Requests/s by outcome",
            [(_sum("capability, outcome", _rate(REQUESTS, unit)), "{{capability}} {{outcome}}")],
            unit="reqps",
            width=8,
        ),
        panel(
            "Dead letters/s by reason", [(dlq, "{{capability}} {{reason}}")], unit="reqps", width=8
        ),
    ]


def unit_scorecard(contracts: Sequence[Contract] | None = None) -> Json:
    """One unit's P&L, latency against its SLA, availability and errors; pick the unit."""
    found = _contracts(contracts)
    unit = 'unit=~"$unit"'
    choice = variable("unit", f"label_values({REQUESTS}, unit)", default=[found[0].unit])
    panels = [*_scorecard_money(found, unit), *_scorecard_latency(unit), *_scorecard_errors(unit)]
    return dashboard("mbs-unit-scorecard", "MBS / Unit scorecard", panels, [choice])


def _bill_cost(contracts: Sequence[Contract], journey: str) -> list[Json]:
    runs = _sum("journey", _rate(JOURNEYS, journey))
    by_unit = _sum("journey, unit, currency", _rate(JOURNEY_COST, journey))
    total = _sum("journey, currency", _rate(JOURNEY_COST, journey))
    money = _money_unit(contracts)
    return [
        row("Bill of materials"),
        panel(
            "Cost per journey",
            [(f"{total} / on (journey) group_left {runs}", "{{journey}}")],
            unit=money,
            kind="stat",
            width=8,
        ),
        panel(
            "Cost per journey by unit",
            [(f"{by_unit} / on (journey) group_left {runs}", "{{journey}} {{unit}}")],
            unit=money,
            width=16,
        ),
    ]


def _bill_latency(journey: str) -> list[Json]:
    by = "journey, version"
    step_by = "journey, step, unit, provider"
    legend = "{{journey}} {{step}} {{provider}}"
    return [
        row("Latency"),
        panel(
            "Journey latency p50 / p99",
            [
                (_quantile(0.5, JOURNEY, by, journey), "p50 {{journey}} v{{version}}"),
                (_quantile(0.99, JOURNEY, by, journey), "p99 {{journey}} v{{version}}"),
            ],
            unit="s",
        ),
        panel(
            "Journeys/s by outcome",
            [(_sum("journey, outcome", _rate(JOURNEYS, journey)), "{{journey}} {{outcome}}")],
            unit="reqps",
        ),
        panel(
            "Step latency p99 per step and provider",
            [(_quantile(0.99, STEP, step_by, journey), legend)],
            unit="s",
            width=24,
        ),
        panel(
            "Steps: calls/s, p50, p99",
            [
                (_sum(step_by, _rate(f"{STEP}_count", journey)), "calls/s"),
                (_quantile(0.5, STEP, step_by, journey), "p50"),
                (_quantile(0.99, STEP, step_by, journey), "p99"),
            ],
            unit="s",
            kind="table",
            width=24,
        ),
    ]


def journey_bill(contracts: Sequence[Contract] | None = None) -> Json:
    """What a journey costs, per owning unit, and where its time goes, per step and provider."""
    found = _contracts(contracts)
    journey = 'journey=~"$journey"'
    choice = variable("journey", f"label_values({JOURNEYS}, journey)", multi=True)
    panels = [*_bill_cost(found, journey), *_bill_latency(journey)]
    return dashboard("mbs-journey-bill", "MBS / Journey bill of materials", panels, [choice])


def _terms(capability: str) -> Json:
    declared = {SLA_P99: "SLA p99 (s)", SLA_AVAILABILITY: "SLA availability"}
    declared |= {PRICE: "price per call", CALL_COST: "cost per call"}
    by = "capability, unit, owner, kind"
    exprs = [(f"max by ({by}) ({name}{{{capability}}})", title) for name, title in declared.items()]
    return panel("Declared terms (contracts)", exprs, kind="table", width=24, height=5)


def _providers_side_by_side(contracts: Sequence[Contract]) -> list[Json]:
    cap = 'capability=~"$capability"'
    by = "capability, unit"
    money = _money_unit(contracts)
    agree = _ratio(SHADOW, "capability, provider", 'agreement="agree"', cap)
    return [
        row("$capability", repeat="capability"),
        _terms(cap),
        panel(
            "Price per billed call",
            [(_per_call(REVENUE, by, cap), "{{unit}}")],
            unit=money,
            width=8,
        ),
        panel(
            "Cost per billed call", [(_per_call(COST, by, cap), "{{unit}}")], unit=money, width=8
        ),
        panel(
            "Handler p99 and SLA",
            [
                (_quantile(0.99, HANDLER, by, cap), "{{unit}}"),
                (f"max by (capability, unit) ({SLA_P99}{{{cap}}})", "SLA {{unit}}"),
            ],
            unit="s",
            width=8,
        ),
        panel(
            "Error ratio (failed + invalid)",
            [(_ratio(REQUESTS, by, BROKEN, cap), "{{unit}}")],
            unit="percentunit",
            width=12,
        ),
        panel(
            "Shadow agreement with the live provider",
            [(agree, "{{provider}}")],
            unit="percentunit",
            width=12,
        ),
    ]


def make_or_buy(contracts: Sequence[Contract] | None = None) -> Json:
    """Providers of a capability side by side; a row per capability offered more than once."""
    found = _contracts(contracts)
    offered: dict[str, set[str]] = {}
    for contract in found:
        offered.setdefault(contract.capability, set()).add(contract.unit)
    contested = [cap for cap in sorted(offered) if len(offered[cap]) > 1]
    choice = variable("capability", options=sorted(offered), default=contested, multi=True)
    panels = _providers_side_by_side(found)
    return dashboard("mbs-make-or-buy", "MBS / Make or buy", panels, [choice])


def dashboards(contracts: Sequence[Contract] | None = None) -> dict[str, Json]:
    """Every dashboard by file name (without .json)."""
    found = _contracts(contracts)
    return {
        "ecosystem_overview": ecosystem_overview(found),
        "unit_scorecard": unit_scorecard(found),
        "journey_bill": journey_bill(found),
        "make_or_buy": make_or_buy(found),
    }


def _panels(items: Sequence[Json]) -> Iterator[Json]:
    for item in items:
        yield item
        yield from _panels(item.get("panels", []))


def panel_queries(dashboard: Json, variables: Mapping[str, str] | None = None) -> list[str]:
    """Every panel query, runnable as PromQL: `$name` becomes variables[name], else `.+`
    (Grafana's "All"), which every variable matcher (`=~`) accepts."""
    given = dict(variables or {})

    def value(match: re.Match[str]) -> str:
        return given.get(match.group(1) or match.group(2), ".+")

    return [
        re.sub(r"\$\{(\w+)\}|\$(\w+)", value, target["expr"])
        for item in _panels(dashboard["panels"])
        for target in item.get("targets", [])
    ]
