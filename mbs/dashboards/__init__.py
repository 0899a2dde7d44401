"""Prometheus scrape config, recording and SLA alert rules, and Grafana dashboards, all
generated from the contracts and the units' ports, so they never drift from the ecosystem.

Regenerate with `python -m mbs.dashboards deploy`; tests/unit/test_observability_config.py
fails when the files under deploy/ differ from a fresh generation.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from mbs.contract.model import Contract
from mbs.dashboards.boards import dashboards, panel_queries
from mbs.dashboards.common import DATASOURCE, GENERATED, Json, _contracts
from mbs.dashboards.prometheus import (
    GATEWAY_METRICS_PATH,
    alert_rules,
    prometheus_compose_config,
    prometheus_config,
    recording_rule_names,
    recording_rules,
)

# --- Files -----------------------------------------------------------------------------


def _yaml(data: Json) -> str:
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=4096)
    return f"# {GENERATED}\n{body}"


def _grafana_datasource() -> Json:
    source = {**DATASOURCE, "name": "Prometheus", "access": "proxy"}
    source.update(url="http://prometheus:9090", isDefault=True, editable=False)
    return {"apiVersion": 1, "datasources": [source]}


def _grafana_provider() -> Json:
    options = {"path": "/var/lib/grafana/dashboards", "foldersFromFilesStructure": False}
    provider = {"name": "mbs", "orgId": 1, "folder": "MBS", "type": "file", "options": options}
    provider.update(disableDeletion=True, allowUiUpdates=False, updateIntervalSeconds=30)
    return {"apiVersion": 1, "providers": [provider]}


def rendered(contracts: Sequence[Contract] | None = None) -> dict[str, str]:
    """Every generated file's text by its path relative to the deploy directory."""
    found = _contracts(contracts)
    files = {
        "prometheus/prometheus.yml": _yaml(prometheus_config()),
        "prometheus/prometheus.compose.yml": _yaml(prometheus_compose_config()),
        "prometheus/recording.rules.yml": _yaml(recording_rules(found)),
        "prometheus/alerts.rules.yml": _yaml(alert_rules(found)),
        "grafana/provisioning/datasources/prometheus.yml": _yaml(_grafana_datasource()),
        "grafana/provisioning/dashboards/mbs.yml": _yaml(_grafana_provider()),
    }
    for name, board in dashboards(found).items():
        files[f"grafana/dashboards/{name}.json"] = json.dumps(board, indent=2, sort_keys=True)
        files[f"grafana/dashboards/{name}.json"] += "\n"
    return files


def write_all(deploy_dir: Path) -> list[Path]:
    """Write every generated file under deploy_dir; returns the paths written."""
    written = []
    for relative, text in rendered().items():
        path = deploy_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    for path in write_all(Path(args[0] if args else "deploy")):
        print(path)
    return 0


__all__ = [
    "GATEWAY_METRICS_PATH",
    "alert_rules",
    "dashboards",
    "main",
    "panel_queries",
    "prometheus_compose_config",
    "prometheus_config",
    "recording_rule_names",
    "recording_rules",
    "rendered",
    "write_all",
]
