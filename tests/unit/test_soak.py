"""The memory soak's verdict (bench/soak_report.py): growth is measured from the sample at the
end of warm-up to the last one, never from the first sample, the minimum or the maximum."""

from __future__ import annotations

import pytest

from bench.soak_report import RssSample, Summary, summarize, table


def _samples(process: str, rss: list[float], every_s: float = 5.0) -> list[RssSample]:
    return [RssSample(i * every_s, process, mb) for i, mb in enumerate(rss)]


def test_growth_is_from_the_end_of_warm_up_to_the_end() -> None:
    # start-up climb (50 -> 100) during warm-up, a dip to 95 and a peak at 130 after it
    samples = _samples("gateway", [50, 80, 100, 95, 130, 108])
    [gateway] = summarize(samples, warmup_s=10)
    assert (gateway.at_warmup_mb, gateway.min_mb, gateway.max_mb, gateway.end_mb) == (
        100,
        95,
        130,
        108,
    )
    assert gateway.growth_pct == pytest.approx(8.0)  # not +116% (first), +13.7% (min), +30% (max)
    assert gateway.spread_pct == pytest.approx((130 - 95) / 95 * 100)
    assert gateway.flat


@pytest.mark.parametrize(
    ("end_mb", "flat", "verdict"),
    [
        (109.9, True, "flat (within 10%)"),
        (110.1, False, "GROWS"),
        (90.1, True, "flat (within 10%)"),
        (89.9, False, "shrinks"),
    ],
)
def test_the_verdict_is_growth_within_the_tolerance_either_way(
    end_mb: float, flat: bool, verdict: str
) -> None:
    summary = Summary("unit", at_warmup_mb=100, min_mb=85, max_mb=115, end_mb=end_mb)
    assert (summary.flat, summary.verdict) == (flat, verdict)


def test_the_tolerance_is_a_parameter() -> None:
    samples = _samples("pricing", [100, 100, 104])
    [loose] = summarize(samples, warmup_s=0)
    [strict] = summarize(samples, warmup_s=0, tolerance_pct=3)
    assert loose.flat
    assert not strict.flat


def test_each_process_is_judged_alone_and_one_dead_in_warm_up_is_left_out() -> None:
    samples = [
        *_samples("pricing", [70, 70, 71, 72]),
        *_samples("gateway", [100, 120, 150, 200]),
        *_samples("fraud", [70]),  # only before the end of warm-up
    ]
    summaries = summarize(samples, warmup_s=5)
    assert [(s.process, s.flat) for s in summaries] == [("pricing", True), ("gateway", False)]
    assert summaries[1].growth_pct == pytest.approx(200 / 120 * 100 - 100)
    rows = table(summaries).splitlines()
    assert len(rows) == 4
    assert rows[3].startswith("| gateway | 120.0 | 120.0 | 200.0 | 200.0 | +66.7 |")
    assert rows[3].endswith("| GROWS |")
