"""The journey benchmark's pure parts: /proc stat lines, CPU per item, wrk's report, phases,
and the ratios it prints (current / baseline, tracing's cost, latency over raw)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.cpu import CLK_TCK, ms_per_item, parse_stat, total
from bench.journeys_report import comparison, cost_pct, cpu_summary, latency_vs_raw, ratio
from bench.load import parse_wrk
from bench.phases import parse_phases, tracing_label

STAT = (
    "4242 (python3 -m (x) y) S 17 4242 4242 0 -1 4194304 2000 0 0 0 "
    "250 40 7 3 20 0 5 0 123456 1000000 2000 18446744073709551615"
)
WRK = """Running 3s test @ http://127.0.0.1:1/journeys/bench-one-step
  Latency Distribution
     50%    5.55ms
     75%    8.10ms
     90%   12.00ms
     99%    1.20s
  486 requests in 3.00s, 1.23MB read
Requests/sec:    161.95
"""


def test_a_stat_line_with_spaces_and_parentheses_in_its_name() -> None:
    stat = parse_stat(STAT)
    assert (stat.pid, stat.comm, stat.ppid) == (4242, "python3 -m (x) y", 17)
    assert stat.ticks == 290  # utime + stime, not the children's 7 + 3


def test_cpu_ms_per_item_between_snapshots() -> None:
    before = {"gateway": 100, "broker": None, "gone": 5}
    after = {"gateway": 100 + CLK_TCK, "broker": 50, "gone": None}
    spent = ms_per_item(before, after, 200)
    assert spent == {"gateway": 5.0, "broker": None, "gone": None}  # 1000 ms over 200
    assert ms_per_item(before, after, 0)["gateway"] is None


def test_totals_skip_unknowns() -> None:
    assert total([1.0, None, 2.5]) == 3.5
    assert total([None, None]) is None


def test_cpu_summary_groups_units_and_leaves_the_load_out_of_the_platform() -> None:
    row = {"cpu_ms": {"gateway": 2.0, "pricing": 1.0, "fraud": 0.5, "broker": 1.5, "load": 9.0}}
    assert cpu_summary(row) == {
        "gateway": 2.0,
        "units": 1.5,
        "broker": 1.5,
        "load": 9.0,
        "platform": 5.0,
    }


def test_wrk_report() -> None:
    result = parse_wrk(WRK)
    assert (result.per_s, result.requests, result.p50_ms, result.p99_ms) == (
        161.95,
        486,
        5.55,
        1200.0,
    )
    with pytest.raises(RuntimeError):
        parse_wrk("connection refused")


def test_phases_and_their_labels() -> None:
    phases = parse_phases("raw, sampled,baseline-on,")
    assert [(p.name, p.tracing, p.baseline) for p in phases] == [
        ("raw", "off", False),
        ("sampled", "sampled", False),
        ("baseline-on", "on", True),
    ]
    assert tracing_label("sampled", 0.1) == "tracing 10%"
    assert tracing_label("sampled", 0.005) == "tracing 0.5%"
    with pytest.raises(ValueError, match="unknown phase"):
        parse_phases("warp")


def test_ratios() -> None:
    assert ratio(50.0, 200.0) == 0.25
    assert ratio(1.0, 0.0) is None
    assert ratio(None, 1.0) is None
    assert cost_pct(90.0, 100.0) == -10.0
    assert cost_pct(None, 100.0) is None


def _row(phase: str, journey: str, in_flight: int, per_s: float, **more: Any) -> dict[str, Any]:
    return {"phase": phase, "journey": journey, "in_flight": in_flight, "per_s": per_s, **more}


def test_comparison_side_by_side() -> None:
    rows = [
        _row("raw", "raw", 1, 500.0),
        _row("off", "j", 1, 100.0),
        _row("sampled", "j", 1, 95.0),
        _row("on", "j", 1, 80.0),
        _row("baseline-off", "j", 1, 50.0),
        _row("baseline-on", "j", 1, 40.0),
    ]
    [found] = comparison(rows)
    assert found["tracing_cost_pct"] == {"sampled": -5.0, "on": -20.0, "baseline-on": -20.0}
    assert found["current_over_baseline"] == {"off": 2.0, "on": 2.0}


def test_three_step_latency_over_three_raw_round_trips() -> None:
    rows = [
        _row("raw", "raw", 1, 500.0, p50_ms=2.0, p99_ms=5.0, what="raw"),
        _row("off", "bench-three-step", 1, 80.0, p50_ms=12.0, p99_ms=30.0, what="t"),
        _row("off", "bench-three-step", 10, 200.0, p50_ms=50.0, p99_ms=90.0, what="t"),
    ]
    [found] = latency_vs_raw(rows)
    assert (found["three_raw_p50_ms"], found["p50_over_three_raw"]) == (6.0, 2.0)
    assert found["p99_over_three_raw"] == 5.0
    assert latency_vs_raw(rows[1:]) == []
