"""Prometheus metrics of units and the gateway; names and labels are fixed by DESIGN.md."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from mbs.kafka import quarantine

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

UNIT_REQUESTS = Counter(
    "mbs_unit_requests",
    "Requests a unit handled, by outcome.",
    ["unit", "capability", "version", "outcome"],
)
UNIT_HANDLER_SECONDS = Histogram(
    "mbs_unit_handler_seconds",
    "Time in the unit's handler.",
    ["unit", "capability"],
    buckets=LATENCY_BUCKETS,
)
UNIT_COST = Counter(
    "mbs_unit_cost", "What serving calls cost the unit.", ["unit", "capability", "currency"]
)
UNIT_REVENUE = Counter(
    "mbs_unit_revenue", "What the unit charged its callers.", ["unit", "capability", "currency"]
)
UNIT_DLQ = Counter(
    "mbs_unit_dlq", "Requests sent to the dead-letter topic.", ["unit", "capability", "reason"]
)

STEP_SECONDS = Histogram(
    "mbs_step_seconds",
    "Step latency seen by the gateway (request to reply).",
    ["journey", "step", "unit", "provider"],
    buckets=LATENCY_BUCKETS,
)
JOURNEYS = Counter(
    "mbs_journeys", "Finished journeys by outcome.", ["journey", "version", "outcome"]
)
JOURNEY_SECONDS = Histogram(
    "mbs_journey_seconds",
    "Journey latency, start to end.",
    ["journey", "version"],
    buckets=LATENCY_BUCKETS,
)
JOURNEY_COST = Counter(
    "mbs_journey_cost", "What journeys paid the units, by unit.", ["journey", "unit", "currency"]
)
SHADOW_COMPARISONS = Counter(
    "mbs_shadow_comparisons",
    "Shadow replies compared with the primary's.",
    ["capability", "provider", "agreement"],
)
COMPENSATIONS_PARKED = Counter(
    "mbs_compensations_parked",
    "Runs ended with side effects that could not be settled or undone (an operator's to "
    "resolve: GET /runs/parked).",
    ["journey"],
)
# Records of platform topics skipped as unreadable or refused, each copied to `<topic>.dlq`.
# Defined in mbs.kafka, the layer that reads those records and may not import this one.
RECORDS_QUARANTINED = quarantine.RECORDS_QUARANTINED
