"""Telemetry: the fixed Prometheus metrics, OpenTelemetry tracing, and the unit's meter (the
one place a unit's answers become metrics and span attributes)."""

from mbs.telemetry import metrics, tracing
from mbs.telemetry.meter import UnitMeter

__all__ = ["UnitMeter", "metrics", "tracing"]
