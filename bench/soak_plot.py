"""rss.png of a memory soak: one line per process, RSS in MB against minutes, warm-up shaded.

Drawn with matplotlib's object API on the Agg canvas: no pyplot, no display, no global state.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from bench.soak_report import RssSample


def plot(samples: list[RssSample], warmup_s: float, path: Path, title: str) -> None:
    figure = Figure(figsize=(10, 5.5), layout="constrained")
    axes = figure.add_subplot()
    by_process: dict[str, list[RssSample]] = {}
    for sample in samples:
        by_process.setdefault(sample.process, []).append(sample)
    end_min = max((s.time_s for s in samples), default=warmup_s) / 60
    axes.axvspan(0, warmup_s / 60, color="0.9", label="warm-up")
    axes.axvline(warmup_s / 60, color="0.5", linestyle="--", linewidth=1)
    for process, taken in by_process.items():
        taken.sort(key=lambda s: s.time_s)
        axes.plot(
            [s.time_s / 60 for s in taken],
            [s.rss_mb for s in taken],
            marker=".",
            markersize=3,
            linewidth=1.2,
            label=process,
        )
    axes.set_xlim(0, max(end_min, warmup_s / 60))
    axes.set_ylim(bottom=0)
    axes.set_xlabel("minutes since the load started")
    axes.set_ylabel("RSS (MB)")
    axes.set_title(title)
    axes.grid(visible=True, alpha=0.3)
    axes.legend(loc="lower right")
    figure.savefig(path, dpi=110)
