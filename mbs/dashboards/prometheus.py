"""Prometheus: scrape configs, recording rules and SLA alert rules from the contracts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mbs.contract.model import Contract
from mbs.dashboards.common import (
    BROKEN,
    BURN_RATE,
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
    _num,
    _per_unit_capability,
    _ports,
    _quantile,
    _rate,
    _ratio,
    _sum,
)

# --- Prometheus ------------------------------------------------------------------------


GATEWAY_METRICS_PATH = "/metrics/"  # the gateway mounts its metrics app at /metrics
COMPOSE_UNIT_PORT = 9100  # MBS_UNIT_PORT of every unit container in docker-compose.yml
COMPOSE_GATEWAY = "gateway:8080"
# The gateway's /metrics needs a key of role `metrics` (MBS_API_KEYS); this is the dev key of
# the README. In production put the real one in a file and use `credentials_file`.
DEV_METRICS_KEY = "dev-metrics-key"


def _scrape_config(units: Sequence[Json], gateway: str) -> Json:
    """The scrape jobs and rule files shared by the local and the compose configs."""
    return {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": ["recording.rules.yml", "alerts.rules.yml"],
        "scrape_configs": [
            # A unit's own `unit` label wins over the target's (they agree; this avoids
            # an `exported_unit` copy on every series).
            {"job_name": "mbs-units", "honor_labels": True, "static_configs": list(units)},
            {
                "job_name": "mbs-gateway",
                # /metrics only redirects to /metrics/; scrape the real path.
                "metrics_path": GATEWAY_METRICS_PATH,
                "authorization": {"type": "Bearer", "credentials": DEV_METRICS_KEY},
                "static_configs": [{"targets": [gateway]}],
            },
        ],
    }


def prometheus_config(targets_host: str = "127.0.0.1", gateway_port: int = 8080) -> Json:
    """Scrape every unit (labelled with its name) and the gateway every 5 s."""
    units = [
        {"targets": [f"{targets_host}:{port}"], "labels": {"unit": unit}}
        for unit, port in _ports().items()
    ]
    return _scrape_config(units, f"{targets_host}:{gateway_port}")


def prometheus_compose_config() -> Json:
    """prometheus_config for docker-compose.yml: each unit's container on port 9100 (its
    MBS_UNIT_PORT there), reached by service name, and the gateway at gateway:8080."""
    units = [
        {"targets": [f"{unit}:{COMPOSE_UNIT_PORT}"], "labels": {"unit": unit}} for unit in _ports()
    ]
    return _scrape_config(units, COMPOSE_GATEWAY)


def _record(name: str, expr: str, labels: Mapping[str, str] | None = None) -> Json:
    rule: Json = {"record": name, "expr": expr}
    if labels:
        rule["labels"] = dict(labels)
    return rule


def _unit_rules() -> list[Json]:
    uc = "unit, capability"
    rules = [
        _record("mbs:unit_requests:rate1m", _sum(f"{uc}, outcome", _rate(REQUESTS))),
        _record("mbs:unit_requests:rate5m", _sum(uc, _rate(REQUESTS, window="5m"))),
        _record(
            "mbs:unit_error_ratio:rate5m",
            _ratio(REQUESTS, uc, BROKEN, window="5m"),
        ),
        _record("mbs:unit_failed_ratio:rate5m", _ratio(REQUESTS, uc, FAILED, window="5m")),
        _record("mbs:unit_failed_ratio:rate1h", _ratio(REQUESTS, uc, FAILED, window="1h")),
    ]
    rules += [
        _record(f"mbs:unit_handler_p{pct}:5m", _quantile(pct / 100, HANDLER, uc, window="5m"))
        for pct in (50, 95, 99)
    ]
    money = f"{uc}, currency"
    return [
        *rules,
        _record("mbs:unit_revenue:rate5m", _sum(money, _rate(REVENUE, window="5m"))),
        _record("mbs:unit_cost:rate5m", _sum(money, _rate(COST, window="5m"))),
        _record("mbs:unit_margin:rate5m", "mbs:unit_revenue:rate5m - mbs:unit_cost:rate5m"),
        _record("mbs:unit_dlq:rate5m", _sum(f"{uc}, reason", _rate(DLQ, window="5m"))),
    ]


def _gateway_rules() -> list[Json]:
    journey = "journey, version"
    return [
        _record("mbs:journeys:rate5m", _sum(f"{journey}, outcome", _rate(JOURNEYS, window="5m"))),
        _record("mbs:journey_p50:5m", _quantile(0.5, JOURNEY, journey, window="5m")),
        _record("mbs:journey_p99:5m", _quantile(0.99, JOURNEY, journey, window="5m")),
        _record(
            "mbs:step_p99:5m", _quantile(0.99, STEP, "journey, step, unit, provider", window="5m")
        ),
        _record(
            "mbs:journey_cost:rate5m",
            _sum("journey, unit, currency", _rate(JOURNEY_COST, window="5m")),
        ),
        _record(
            "mbs:shadow_agreement:ratio_rate5m",
            _ratio(SHADOW, "capability, provider", 'agreement="agree"', window="5m"),
        ),
    ]


def _contract_rules(contracts: Sequence[Contract]) -> list[Json]:
    """The declared terms as series, so panels can draw targets next to what is observed."""
    rules: list[Json] = []
    for c in _per_unit_capability(contracts):
        who = {"unit": c.unit, "capability": c.capability, "owner": c.owner, "kind": c.kind}
        money = {**who, "currency": c.pricing.currency}
        rules += [
            _record(SLA_P99, f"vector({_num(c.sla.p99_ms / 1000)})", who),
            _record(SLA_AVAILABILITY, f"vector({_num(c.sla.availability)})", who),
            _record(PRICE, f"vector({_num(float(c.pricing.price_per_call))})", money),
            _record(CALL_COST, f"vector({_num(float(c.pricing.cost_per_call))})", money),
        ]
    return rules


def recording_rules(contracts: Sequence[Contract] | None = None) -> Json:
    """Unit, gateway and declared-contract recording rules (`level:metric:operations`)."""
    return {
        "groups": [
            {"name": "mbs-units", "rules": _unit_rules()},
            {"name": "mbs-gateway", "rules": _gateway_rules()},
            {"name": "mbs-contracts", "rules": _contract_rules(_contracts(contracts))},
        ]
    }


def recording_rule_names(contracts: Sequence[Contract] | None = None) -> list[str]:
    """Every series name the recording rules define, sorted and without repeats."""
    groups = recording_rules(contracts)["groups"]
    return sorted({rule["record"] for group in groups for rule in group["rules"]})


# --- Alerts ----------------------------------------------------------------------------

VALUE_DURATION = "{{ $value | humanizeDuration }}"
VALUE_PERCENT = "{{ $value | humanizePercentage }}"


def _who(c: Contract) -> dict[str, str]:
    """Alert labels that route a page to the owner of the breached contract."""
    return {"unit": c.unit, "capability": c.capability, "owner": c.owner}


def _latency_alert(c: Contract) -> Json:
    where = f'unit="{c.unit}", capability="{c.capability}"'
    return {
        "alert": "MbsLatencySlaBreached",
        "expr": f"mbs:unit_handler_p99:5m{{{where}}} > {_num(c.sla.p99_ms / 1000)}",
        "for": "5m",
        "labels": {"severity": "warning", **_who(c)},
        "annotations": {
            "summary": f"{c.capability} by {c.unit} is slower than its {c.sla.p99_ms} ms p99 SLA",
            "description": (
                f"p99 handler latency of {c.capability} at unit {c.unit} (owner {c.owner}) is "
                f"{VALUE_DURATION}; the contract promises p99 <= {c.sla.p99_ms} ms. "
                "It has been above for 5 minutes."
            ),
        },
    }


def _burn_alert(c: Contract) -> Json:
    where = f'unit="{c.unit}", capability="{c.capability}"'
    limit = _num(round((1 - c.sla.availability) * BURN_RATE, 9))
    return {
        "alert": "MbsAvailabilityBudgetBurn",
        "expr": (
            f"mbs:unit_failed_ratio:rate1h{{{where}}} > {limit}"
            f" and mbs:unit_failed_ratio:rate5m{{{where}}} > {limit}"
        ),
        "for": "2m",
        "labels": {"severity": "critical", **_who(c)},
        "annotations": {
            "summary": (
                f"{c.capability} by {c.unit} burns its {c.sla.availability:.3%} availability "
                f"SLA budget {BURN_RATE:g}x too fast"
            ),
            "description": (
                f"Unit {c.unit} (owner {c.owner}) failed {VALUE_PERCENT} of {c.capability} calls "
                f"over the last hour and still does over 5 minutes; the SLA allows "
                f"{1 - c.sla.availability:.3%}. At this rate the 30-day error budget is gone "
                "in about two days."
            ),
        },
    }


def _down_alert(unit: str, owners: str) -> Json:
    return {
        "alert": "MbsUnitDown",
        "expr": f'up{{job="mbs-units", unit="{unit}"}} == 0',
        "for": "1m",
        "labels": {"severity": "critical", "unit": unit, "owner": owners},
        "annotations": {
            "summary": f"Unit {unit} does not answer its /metrics scrape",
            "description": (
                f"Prometheus has not scraped unit {unit} (owner {owners}) for a minute: "
                "its capabilities get no replies and its SLA alerts are blind."
            ),
        },
    }


def alert_rules(contracts: Sequence[Contract] | None = None) -> Json:
    """One group per unit: down, and per capability its p99 and availability-burn SLA alerts."""
    found = _per_unit_capability(_contracts(contracts))
    units = list(dict.fromkeys([*_ports(), *(c.unit for c in found)]))
    groups = []
    for unit in units:
        mine = [c for c in found if c.unit == unit]
        owners = ", ".join(dict.fromkeys(c.owner for c in mine)) or "unknown"
        rules = [_down_alert(unit, owners)] if unit in _ports() else []
        for contract in mine:
            rules += [_latency_alert(contract), _burn_alert(contract)]
        groups.append({"name": f"mbs-sla-{unit}", "rules": rules})
    return {"groups": groups}
