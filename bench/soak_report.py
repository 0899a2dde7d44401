"""What a memory soak concludes from its RSS samples: the pure part of `bench.soak`.

A process passes when its RSS is flat after warm-up: growth = (end - at warm-up) / at warm-up,
within the tolerance (10% by default). The sample at the end of warm-up is the baseline, not
the first sample (start-up allocations are not a leak) and not the minimum (a dip would make
an ordinary plateau look like growth). The spread, (max - min) / min after warm-up, is
reported beside it: a process can end where it started after a large excursion.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

TOLERANCE_PCT = 10.0
CSV_HEADER = ("time_s", "process", "rss_mb")


@dataclass(frozen=True)
class RssSample:
    """One reading of one process's resident set size."""

    time_s: float  # since the load started
    process: str
    rss_mb: float


@dataclass(frozen=True)
class Summary:
    """One process over a soak: RSS at the end of warm-up, after it, and the verdict."""

    process: str
    at_warmup_mb: float
    min_mb: float
    max_mb: float
    end_mb: float
    tolerance_pct: float = TOLERANCE_PCT

    @property
    def growth_pct(self) -> float:
        return (self.end_mb - self.at_warmup_mb) / self.at_warmup_mb * 100

    @property
    def spread_pct(self) -> float:
        return (self.max_mb - self.min_mb) / self.min_mb * 100

    @property
    def flat(self) -> bool:
        return abs(self.growth_pct) <= self.tolerance_pct

    @property
    def verdict(self) -> str:
        if self.flat:
            return f"flat (within {self.tolerance_pct:g}%)"
        return "GROWS" if self.growth_pct > 0 else "shrinks"


def summarize(
    samples: Iterable[RssSample], warmup_s: float, tolerance_pct: float = TOLERANCE_PCT
) -> list[Summary]:
    """One summary per process (in order of first appearance) from the samples taken at or
    after `warmup_s`; a process with no such sample is left out (it died during warm-up)."""
    after: dict[str, list[RssSample]] = {}
    for sample in samples:
        after.setdefault(sample.process, [])
        if sample.time_s >= warmup_s:
            after[sample.process].append(sample)
    summaries = []
    for process, taken in after.items():
        if not taken:
            continue
        taken.sort(key=lambda s: s.time_s)
        rss = [s.rss_mb for s in taken]
        summaries.append(
            Summary(
                process=process,
                at_warmup_mb=rss[0],
                min_mb=min(rss),
                max_mb=max(rss),
                end_mb=rss[-1],
                tolerance_pct=tolerance_pct,
            )
        )
    return summaries


def table(summaries: list[Summary]) -> str:
    """A Markdown table, ready to paste into bench/RESULTS.md."""
    lines = [
        "| process | at warm-up MB | min MB | max MB | end MB | growth % | spread % | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {s.process} | {s.at_warmup_mb:.1f} | {s.min_mb:.1f} | {s.max_mb:.1f} "
        f"| {s.end_mb:.1f} | {s.growth_pct:+.1f} | {s.spread_pct:.1f} | {s.verdict} |"
        for s in summaries
    ]
    return "\n".join(lines)


class CsvLog:
    """rss.csv, written as samples arrive: a soak cut short still leaves its data."""

    def __init__(self, path: Path) -> None:
        self.file: TextIO = path.open("w", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(CSV_HEADER)

    def add(self, sample: RssSample) -> None:
        self.writer.writerow((f"{sample.time_s:.1f}", sample.process, f"{sample.rss_mb:.1f}"))
        self.file.flush()

    def close(self) -> None:
        self.file.close()
