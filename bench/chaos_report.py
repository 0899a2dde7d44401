"""The numbers of a chaos run: outcomes, kills per kind, journey latency inside and outside
the kill windows, and how long each restarted process took to serve again."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.chaos_kills import KINDS, Kill
from bench.chaos_load import Submission


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def spread(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": percentile(values, 0.5),
        "p99": percentile(values, 0.99),
        "max": round(max(values), 1) if values else None,
    }


def in_a_window(sub: Submission, windows: list[tuple[float, float]]) -> bool:
    """Did the run's life (created to decided) overlap an outage?"""
    assert sub.created_ms is not None
    assert sub.latency_ms is not None
    start = sub.created_ms / 1000
    end = start + sub.latency_ms / 1000
    return any(start <= w_end and w_start <= end for w_start, w_end in windows)


def latency(runs: list[Submission], kills: list[Kill]) -> dict[str, Any]:
    """Gateway-measured journey latency (ms, created to decided), per journey and overall,
    split by whether the run overlapped a kill window (kill to serving again)."""
    windows = [k.window() for k in kills]
    timed = [s for s in runs if s.decided and s.latency_ms is not None and s.created_ms]
    found: dict[str, Any] = {}
    for journey in ["all", *sorted({s.journey for s in timed})]:
        chosen = [s for s in timed if journey in ("all", s.journey)]
        inside = [s.latency_ms or 0.0 for s in chosen if in_a_window(s, windows)]
        outside = [s.latency_ms or 0.0 for s in chosen if not in_a_window(s, windows)]
        found[journey] = {"inside_kill_windows": spread(inside), "outside": spread(outside)}
    return found


def summarize(
    *,
    seed: int,
    seconds: float,
    rate: float,
    runs: list[Submission],
    refused: Counter[str],
    kills: list[Kill],
    findings: list[dict[str, Any]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    accepted = [s for s in runs if s.accepted]
    statuses = Counter(s.status for s in accepted)
    journeys = Counter(s.journey for s in accepted)
    return {
        "seed": seed,
        "seconds": seconds,
        "rate_per_s": rate,
        "accepted": len(accepted),
        "accepted_by_journey": dict(journeys),
        "completed": statuses["completed"],
        "failed": statuses["failed"],
        "timed_out": statuses["timed_out"],
        "compensation_failed": statuses["compensation_failed"],
        "not_finished": sum(1 for s in accepted if not s.finished),
        "compensated": sum(1 for s in accepted if s.compensated),
        "failures_by_code": dict(Counter(s.error_code for s in accepted if s.error_code)),
        "variants": dict(Counter(s.variant for s in accepted)),
        "not_accepted": dict(refused),
        "kills": {kind: sum(1 for k in kills if k.kind == kind) for kind in KINDS},
        "latency_ms": latency(accepted, kills),
        "restart_to_serving_s": {
            kind: spread([k.serving_s for k in kills if k.kind == kind and k.serving_s])
            for kind in KINDS
        },
        "failed_starts": {
            kind: sum(k.failed_starts for k in kills if k.kind == kind) for kind in KINDS
        },
        "broker_restart_to_in_sync_s": spread(
            [k.in_sync_at - k.restarted_at for k in kills if k.in_sync_at is not None]
        ),
        "kill_log": [k.as_json() for k in kills],
        "violations": sum(len(f["violations"]) for f in findings),
        "invariants": [
            {
                "invariant": f["invariant"],
                "checked": f["checked"],
                "violations": len(f["violations"]),
                "examples": f["violations"][:5],
            }
            for f in findings
        ],
        **extra,
    }
