"""Monitoring on the Prometheus Operator and Grafana: ServiceMonitors that label targets as
deploy/prometheus's scrape jobs do (the alert rules match `job` and `unit`), the same
recording and SLA alert rules as a PrometheusRule, the dashboards as sidecar ConfigMaps."""

from __future__ import annotations

import json
from collections.abc import Sequence

from mbs.contract.model import Contract
from mbs.dashboards.boards import dashboards
from mbs.dashboards.k8s.common import GATEWAY_SECRET, PART_OF, Json, meta
from mbs.dashboards.prometheus import GATEWAY_METRICS_PATH, alert_rules, recording_rules

MONITORING = "monitoring.coreos.com/v1"
INTERVAL = "15s"
# The Grafana sidecar (kiwigrid/k8s-sidecar, as the Grafana Helm chart runs it) loads every
# ConfigMap with this label, into the folder its annotation names.
DASHBOARD_LABEL = "grafana_dashboard"
FOLDER_ANNOTATION = "grafana_folder"


def _job(name: str) -> Json:
    return {"action": "replace", "targetLabel": "job", "replacement": name}


def service_monitors() -> list[Json]:
    """Units as job `mbs-units` with a `unit` label (their own `unit` label wins, as in
    deploy/prometheus); the gateway as `mbs-gateway` with a metrics key as Bearer token."""
    unit_label = {
        "action": "replace",
        "sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_name"],
        "targetLabel": "unit",
    }
    units = {
        "apiVersion": MONITORING,
        "kind": "ServiceMonitor",
        "metadata": meta("mbs-units", "monitoring"),
        "spec": {
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/component": "unit",
                    "app.kubernetes.io/part-of": PART_OF,
                }
            },
            "endpoints": [
                {
                    "port": "ops",
                    "path": "/metrics",
                    "interval": INTERVAL,
                    "honorLabels": True,
                    "relabelings": [_job("mbs-units"), unit_label],
                }
            ],
        },
    }
    gateway = {
        "apiVersion": MONITORING,
        "kind": "ServiceMonitor",
        "metadata": meta("mbs-gateway", "monitoring"),
        "spec": {
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/component": "gateway",
                    "app.kubernetes.io/part-of": PART_OF,
                }
            },
            "endpoints": [
                {
                    "port": "http",
                    "path": GATEWAY_METRICS_PATH,
                    "interval": INTERVAL,
                    "authorization": {
                        "type": "Bearer",
                        "credentials": {"name": GATEWAY_SECRET, "key": "metrics-key"},
                    },
                    "relabelings": [_job("mbs-gateway")],
                }
            ],
        },
    }
    return [units, gateway]


def prometheus_rule(contracts: Sequence[Contract]) -> Json:
    """deploy/prometheus/recording.rules.yml and alerts.rules.yml, as one resource."""
    groups = recording_rules(contracts)["groups"] + alert_rules(contracts)["groups"]
    return {
        "apiVersion": MONITORING,
        "kind": "PrometheusRule",
        "metadata": meta("mbs-rules", "monitoring"),
        "spec": {"groups": groups},
    }


def dashboard_config_maps(contracts: Sequence[Contract]) -> list[Json]:
    """deploy/grafana/dashboards, one ConfigMap each."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(
                f"mbs-dashboard-{name.replace('_', '-')}",
                "monitoring",
                extra_labels={DASHBOARD_LABEL: "1"},
                annotations={FOLDER_ANNOTATION: "MBS"},
            ),
            "data": {f"{name}.json": json.dumps(board, indent=2, sort_keys=True) + "\n"},
        }
        for name, board in sorted(dashboards(contracts).items())
    ]
