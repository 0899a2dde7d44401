"""Tables and summaries of the journey benchmark: throughput, latency and CPU per journey per
row; CPU per process; tracing's cost and the current code against a baseline commit side by
side; the three-step journey's latency against three raw round trips."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.cpu import total

UNITS = ("pricing", "fraud", "notifications")
PROCESSES = ("gateway", *UNITS, "responder", "broker", "load", "sink")
Row = Mapping[str, Any]


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, None if either is unknown or the reference is zero."""
    if value is None or reference is None or reference == 0:
        return None
    return round(value / reference, 3)


def cost_pct(value: float | None, reference: float | None) -> float | None:
    """How much lower (negative) or higher `value` is than `reference`, in percent."""
    share = ratio(value, reference)
    return None if share is None else round((share - 1) * 100, 1)


def cpu_summary(row: Row) -> dict[str, float | None]:
    """CPU ms per journey of the row, grouped: gateway, units (the raw rows: the responder),
    broker, load generator, and the platform's total (all but the load generator)."""
    cpu: Mapping[str, float | None] = row.get("cpu_ms", {})
    units = total(cpu.get(name) for name in (*UNITS, "responder"))
    grouped = {
        "gateway": cpu.get("gateway"),
        "units": units,
        "broker": cpu.get("broker"),
        "load": cpu.get("load"),
    }
    grouped["platform"] = total([grouped["gateway"], units, grouped["broker"]])
    return grouped


def _f(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}%"


def describe(row: Row) -> str:
    """One line for the progress output."""
    cpu = cpu_summary(row)
    return (
        f"{row['what']} x{row['in_flight']}: {row['per_s']}/s, p50 {row['p50_ms']} ms, "
        f"p99 {row['p99_ms']} ms | cpu ms each: gateway {_f(cpu['gateway'])}, units "
        f"{_f(cpu['units'])}, broker {_f(cpu['broker'])}, load {_f(cpu['load'])}"
    )


def main_table(rows: Sequence[Row]) -> str:
    lines = [
        "| what | in flight | per s | p50 ms | p99 ms | step p50 ms | cpu ms/journey: gateway "
        "| units | broker | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cpu = cpu_summary(r)
        lines.append(
            f"| {r['what']} | {r['in_flight']} | {r['per_s']} | {r['p50_ms']} | {r['p99_ms']} "
            f"| {r['step_p50_ms']} | {_f(cpu['gateway'])} | {_f(cpu['units'])} "
            f"| {_f(cpu['broker'])} | {_f(cpu['load'])} |"
        )
    return "\n".join(lines)


def cpu_table(rows: Sequence[Row]) -> str:
    shown = [p for p in PROCESSES if any(p in r.get("cpu_ms", {}) for r in rows)]
    lines = [
        "| what | in flight | " + " | ".join(shown) + " | platform (no load) |",
        "|---|---|" + "---|" * (len(shown) + 1),
    ]
    for r in rows:
        cpu = r.get("cpu_ms", {})
        cells = [_f(cpu.get(p), 3) if p in cpu else "-" for p in shown]
        platform = _f(cpu_summary(r)["platform"], 3)
        lines.append(f"| {r['what']} | {r['in_flight']} | {' | '.join(cells)} | {platform} |")
    return "\n".join(lines)


def comparison(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Per journey and in flight: journeys/s of each phase, tracing's cost against tracing off
    of the same code, and current / baseline at the same tracing."""
    by_key: dict[tuple[str, int], dict[str, float]] = {}
    for r in rows:
        if r["journey"] != "raw":
            by_key.setdefault((r["journey"], r["in_flight"]), {})[r["phase"]] = r["per_s"]
    found = []
    for (journey, in_flight), rate in by_key.items():
        costs = {
            phase: cost_pct(rate.get(phase), rate.get(off))
            for phase, off in (
                ("sampled", "off"),
                ("on", "off"),
                ("baseline-on", "baseline-off"),
            )
            if phase in rate
        }
        versus = {
            tracing: ratio(rate.get(tracing), rate.get(f"baseline-{tracing}"))
            for tracing in ("off", "on")
            if tracing in rate and f"baseline-{tracing}" in rate
        }
        found.append(
            {
                "journey": journey,
                "in_flight": in_flight,
                "per_s": rate,
                "tracing_cost_pct": costs,
                "current_over_baseline": versus,
            }
        )
    return found


def comparison_table(compared: list[dict[str, Any]], sample_ratio: float) -> str:
    names = {
        "off": "off",
        "sampled": f"{sample_ratio * 100:g}%",
        "on": "on",
        "baseline-off": "baseline off",
        "baseline-on": "baseline on",
    }
    phases = [p for p in names if any(p in c["per_s"] for c in compared)]
    # (header, which figure of a comparison, its key)
    columns: list[tuple[str, str, str]] = []
    for phase in phases:
        columns.append((f"{names[phase]} per s", "per_s", phase))
        if phase in ("sampled", "on", "baseline-on"):
            against = "vs baseline off" if phase == "baseline-on" else "vs off"
            columns.append((against, "tracing_cost_pct", phase))
    columns += [
        (f"current/baseline {t}", "current_over_baseline", t)
        for t in ("off", "on")
        if t in phases and f"baseline-{t}" in phases
    ]
    lines = [
        "| journey | in flight | " + " | ".join(h for h, _, _ in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for c in compared:
        cells = " | ".join(_cell(c[figure].get(key), figure) for _, figure, key in columns)
        lines.append(f"| {c['journey']} | {c['in_flight']} | {cells} |")
    return "\n".join(lines)


def _cell(value: float | None, figure: str) -> str:
    if figure == "tracing_cost_pct":
        return _pct(value)
    if figure == "current_over_baseline":
        return _f(value)
    return "-" if value is None else str(value)


def latency_vs_raw(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """The three-step journey's p50 and p99 at one in flight over 3 x the raw round trip's
    p50 at one in flight, per phase."""
    raw = next((r for r in rows if r["journey"] == "raw" and r["in_flight"] == 1), None)
    if raw is None:
        return []
    floor = round(3 * raw["p50_ms"], 2)
    return [
        {
            "phase": r["phase"],
            "what": r["what"],
            "p50_ms": r["p50_ms"],
            "p99_ms": r["p99_ms"],
            "three_raw_p50_ms": floor,
            "p50_over_three_raw": ratio(r["p50_ms"], floor),
            "p99_over_three_raw": ratio(r["p99_ms"], floor),
        }
        for r in rows
        if r["journey"] == "bench-three-step" and r["in_flight"] == 1
    ]


def latency_lines(found: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"- {f['what']} at 1 in flight against 3 raw round trips (3 x raw p50 = "
        f"{f['three_raw_p50_ms']} ms): p50 {f['p50_ms']} ms = {_f(f['p50_over_three_raw'])}x, "
        f"p99 {f['p99_ms']} ms = {_f(f['p99_over_three_raw'])}x"
        for f in found
    )


def report(
    rows: Sequence[Row], sample_ratio: float, out: Path | None, notes: Sequence[str] = ()
) -> dict[str, Any]:
    """Print the tables and notes (and append them to `out`); the summaries for the JSON
    document."""
    compared = comparison(rows)
    latency = latency_vs_raw(rows)
    parts = [main_table(rows), "CPU ms per journey (raw: per round trip), per process:"]
    parts.append(cpu_table(rows))
    if compared:
        parts += ["Journeys/s side by side:", comparison_table(compared, sample_ratio)]
    if latency:
        parts += ["Latency against the raw round trip:", latency_lines(latency)]
    if notes:
        parts += ["Notes:", "\n".join(f"- {note}" for note in notes)]
    text = "\n\n".join(parts)
    print("\n" + text, flush=True)
    if out is not None:
        with out.open("a") as f:
            f.write(text + "\n")
    return {"comparison": compared, "latency_vs_raw": latency}
