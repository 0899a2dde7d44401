"""deploy/prometheus and deploy/grafana stay generated from the contracts, valid, and honest.

The files on disk must equal a fresh `mbs.dashboards` generation; promtool must accept the
scrape config and the rules; every unit and contract has its alerts; dashboards query only
the metric names fixed by DESIGN.md and the recording rules defined next to them.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.routing import Mount

from contracts import all_contracts
from gateway.app import create_app
from mbs import Contract, dashboards
from services import PORTS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
REGENERATE = "regenerate with `python -m mbs.dashboards deploy`"
FIXED_METRICS = {
    "mbs_unit_requests_total": "counter",
    "mbs_unit_handler_seconds": "histogram",
    "mbs_unit_cost_total": "counter",
    "mbs_unit_revenue_total": "counter",
    "mbs_unit_dlq_total": "counter",
    "mbs_step_seconds": "histogram",
    "mbs_journeys_total": "counter",
    "mbs_journey_seconds": "histogram",
    "mbs_journey_cost_total": "counter",
    "mbs_shadow_comparisons_total": "counter",
}
RULE_FILES = ("recording.rules.yml", "alerts.rules.yml")
SCRAPE_CONFIGS = ("prometheus.yml", "prometheus.compose.yml")  # local run, docker-compose.yml
NAMES = re.compile(r"mbs:[a-z_0-9:]+|mbs_[a-z_]+")
DASHBOARDS = dashboards.dashboards()
needs_promtool = pytest.mark.needs_tool("promtool", "apt-get install prometheus")


def _allowed_names() -> set[str]:
    allowed = set(dashboards.recording_rule_names())
    for name, kind in FIXED_METRICS.items():
        allowed.add(name)
        if kind == "histogram":
            allowed |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return allowed


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def _alerts() -> list[dict[str, Any]]:
    groups = dashboards.alert_rules()["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _alert(name: str, contract: Contract) -> dict[str, Any]:
    """The one alert called `name` for the contract's unit and capability."""
    found = [
        rule
        for rule in _alerts()
        if rule["alert"] == name
        and rule["labels"].get("unit") == contract.unit
        and rule["labels"].get("capability") == contract.capability
    ]
    assert len(found) == 1, f"{name} for {contract.unit} {contract.capability}: {len(found)}"
    return found[0]


def test_deploy_files_are_a_fresh_generation() -> None:
    generated = dashboards.rendered()
    assert {f"prometheus/{name}" for name in SCRAPE_CONFIGS} <= generated.keys()
    stale = [
        rel
        for rel, text in generated.items()
        if not (DEPLOY / rel).is_file() or (DEPLOY / rel).read_text() != text
    ]
    assert not stale, f"deploy/ differs from the contracts in {stale}: {REGENERATE}"


def test_no_stray_dashboards() -> None:
    on_disk = {p.stem for p in (DEPLOY / "grafana" / "dashboards").glob("*.json")}
    assert on_disk == set(DASHBOARDS), f"dashboards on disk {sorted(on_disk)}: {REGENERATE}"


def test_generation_is_deterministic(tmp_path: Path) -> None:
    first = dashboards.write_all(tmp_path / "a")
    second = dashboards.write_all(tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_command_line_writes_the_deploy_tree(tmp_path: Path) -> None:
    assert dashboards.main([str(tmp_path)]) == 0
    written = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert written == set(dashboards.rendered())


@needs_promtool
@pytest.mark.parametrize("name", SCRAPE_CONFIGS)
def test_promtool_accepts_the_scrape_config(tmp_path: Path, name: str) -> None:
    dashboards.write_all(tmp_path)
    checked = _promtool("check", "config", tmp_path / "prometheus" / name)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_promtool_accepts_the_committed_compose_config() -> None:
    """The file docker-compose.yml mounts, as it is on disk, with its rule files."""
    checked = _promtool("check", "config", DEPLOY / "prometheus" / "prometheus.compose.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    dashboards.write_all(tmp_path)
    rules = sorted((tmp_path / "prometheus").glob("*.rules.yml"))
    checked = _promtool("check", "rules", *rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as the expression of a throwaway recording rule."""
    queries = [q for board in DASHBOARDS.values() for q in dashboards.panel_queries(board)]
    rules = [{"record": f"mbs:panel_query_{i}", "expr": q} for i, q in enumerate(queries)]
    path = tmp_path / "panels.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    checked = _promtool("check", "rules", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _series(metric: str, values: str, **labels: str) -> dict[str, str]:
    inner = ", ".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{metric}{{{inner}}}", "values": values}


def _firing(alert: str, **labels: str) -> dict[str, Any]:
    by = ", ".join(["alertname", *labels])
    query = f'count by ({by}) (ALERTS{{alertstate="firing", alertname="{alert}"}})'
    expected = ", ".join(
        f'{key}="{value}"' for key, value in {"alertname": alert, **labels}.items()
    )
    return {
        "expr": query,
        "eval_time": "90m",
        "exp_samples": [{"labels": f"{{{expected}}}", "value": 1}],
    }


@needs_promtool
def test_alerts_fire_only_for_the_contract_they_breach(tmp_path: Path) -> None:
    """5 % failures burn pricing's 99.9 % budget; ~100 ms p99 breaks its 50 ms p99; inventory,
    healthy and fast, stays quiet (promtool compares the firing set exactly)."""
    dashboards.write_all(tmp_path)
    pricing = {"unit": "pricing", "capability": "pricing.quote"}
    inventory = {"unit": "inventory", "capability": "inventory.reserve"}
    requests, buckets = "mbs_unit_requests_total", "mbs_unit_handler_seconds_bucket"
    series = [
        _series(requests, "0+95x120", **pricing, version="1.0.0", outcome="ok"),
        _series(requests, "0+5x120", **pricing, version="1.0.0", outcome="failed"),
        _series(requests, "0+100x120", **inventory, version="1.0.0", outcome="ok"),
        _series(buckets, "0x120", **pricing, le="0.05"),
        _series(buckets, "0+100x120", **pricing, le="0.1"),
        _series(buckets, "0+100x120", **pricing, le="+Inf"),
        _series(buckets, "0+100x120", **inventory, le="0.01"),
        _series(buckets, "0+100x120", **inventory, le="+Inf"),
    ]
    checks = [
        _firing("MbsAvailabilityBudgetBurn", **pricing, severity="critical"),
        _firing("MbsLatencySlaBreached", **pricing, severity="warning"),
    ]
    suite = {
        "rule_files": [str(tmp_path / "prometheus" / name) for name in RULE_FILES],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": checks}],
    }
    (tmp_path / "alerts.test.yml").write_text(yaml.safe_dump(suite))
    checked = _promtool("test", "rules", tmp_path / "alerts.test.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_scrape_config_has_every_unit_and_the_gateway() -> None:
    config = dashboards.prometheus_config(gateway_port=8181)
    jobs = {job["job_name"]: job["static_configs"] for job in config["scrape_configs"]}
    units = {c["labels"]["unit"]: c["targets"] for c in jobs["mbs-units"]}
    assert units == {unit: [f"127.0.0.1:{port}"] for unit, port in PORTS.items()}
    assert jobs["mbs-gateway"] == [{"targets": ["127.0.0.1:8181"]}]
    assert config["global"]["scrape_interval"] == "5s"
    assert config["rule_files"] == ["recording.rules.yml", "alerts.rules.yml"]


def test_compose_scrape_config_reaches_containers_by_service_name() -> None:
    local, compose = dashboards.prometheus_config(), dashboards.prometheus_compose_config()
    assert {k: v for k, v in compose.items() if k != "scrape_configs"} == {
        k: v for k, v in local.items() if k != "scrape_configs"
    }
    jobs = {job["job_name"]: job for job in compose["scrape_configs"]}
    assert [job["job_name"] for job in compose["scrape_configs"]] == [
        job["job_name"] for job in local["scrape_configs"]
    ]
    units = {c["labels"]["unit"]: c["targets"] for c in jobs["mbs-units"]["static_configs"]}
    assert units == {unit: [f"{unit}:9100"] for unit in PORTS}
    assert jobs["mbs-units"]["honor_labels"] is True
    assert jobs["mbs-gateway"]["static_configs"] == [{"targets": ["gateway:8080"]}]


@pytest.mark.parametrize(
    "config", [dashboards.prometheus_config(), dashboards.prometheus_compose_config()]
)
def test_gateway_is_scraped_where_it_serves_metrics(config: dict[str, Any]) -> None:
    """gateway/app.py mounts the metrics app at /metrics: it answers at /metrics/."""
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "mbs-gateway"]
    mounts = [r.path for r in create_app().routes if isinstance(r, Mount)]
    assert job["metrics_path"] == dashboards.GATEWAY_METRICS_PATH
    assert dashboards.GATEWAY_METRICS_PATH.rstrip("/") in mounts


def test_every_unit_has_a_down_alert() -> None:
    down = {rule["labels"]["unit"] for rule in _alerts() if rule["alert"] == "MbsUnitDown"}
    assert down == set(PORTS)


@pytest.mark.parametrize("alert", ["MbsLatencySlaBreached", "MbsAvailabilityBudgetBurn"])
def test_every_contract_has_its_sla_alerts(alert: str) -> None:
    for contract in all_contracts():
        rule = _alert(alert, contract)
        assert rule["labels"]["severity"] in {"warning", "critical"}
        text = rule["annotations"]["summary"] + rule["annotations"]["description"]
        assert contract.unit in text
        assert contract.owner in text


def test_latency_alert_uses_the_contract_p99() -> None:
    for contract in all_contracts():
        expr = _alert("MbsLatencySlaBreached", contract)["expr"]
        assert expr.endswith(f"> {contract.sla.p99_ms / 1000:g}"), expr


def test_burn_alert_uses_both_windows_and_the_budget() -> None:
    for contract in all_contracts():
        expr = _alert("MbsAvailabilityBudgetBurn", contract)["expr"]
        limit = f"> {round((1 - contract.sla.availability) * 14.4, 9):.6g}"
        assert "mbs:unit_failed_ratio:rate1h" in expr, expr
        assert "mbs:unit_failed_ratio:rate5m" in expr, expr
        assert expr.count(limit) == 2, expr


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_shape(name: str) -> None:
    board = DASHBOARDS[name]
    assert board["uid"], name
    assert board["title"], name
    assert board["schemaVersion"] >= 39
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert panels, f"{name} has no panels"
    for item in panels:
        assert item["targets"], f"{name}: panel {item['title']!r} has no targets"
        assert item["datasource"] == {"type": "prometheus", "uid": "prometheus"}
        assert all(t["expr"] for t in item["targets"]), item["title"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), f"{name} repeats panel ids"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboards_query_only_fixed_metrics_and_defined_rules(name: str) -> None:
    board = DASHBOARDS[name]
    texts = dashboards.panel_queries(board)
    texts += [str(v.get("query", "")) for v in board["templating"]["list"]]
    used = {token for text in texts for token in NAMES.findall(text)}
    unknown = used - _allowed_names()
    assert not unknown, f"{name} uses names neither DESIGN.md nor the rules define: {unknown}"


def test_rules_use_only_fixed_metrics() -> None:
    rules = yaml.safe_load(dashboards.rendered()["prometheus/recording.rules.yml"])
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    exprs += [rule["expr"] for rule in _alerts()]
    unknown = {t for e in exprs for t in NAMES.findall(e)} - _allowed_names()
    assert not unknown, f"rules use undefined names: {unknown}"


def test_panel_queries_fill_in_variables() -> None:
    board = DASHBOARDS["unit_scorecard"]
    assert all("$" not in q for q in dashboards.panel_queries(board))
    chosen = dashboards.panel_queries(board, {"unit": "pricing"})
    assert any('unit=~"pricing"' in q for q in chosen)


def test_make_or_buy_defaults_to_capabilities_with_several_providers() -> None:
    (choice,) = DASHBOARDS["make_or_buy"]["templating"]["list"]
    assert choice["name"] == "capability"
    units: dict[str, set[str]] = {}
    for contract in all_contracts():
        units.setdefault(contract.capability, set()).add(contract.unit)
    contested = {capability for capability, offered in units.items() if len(offered) > 1}
    assert contested, "no capability has two providers: the check proves nothing"
    assert set(choice["current"]["value"]) == contested
    assert [o["text"] for o in choice["options"]] == sorted(units)


def test_unit_scorecard_picks_units_from_the_metric() -> None:
    (choice,) = DASHBOARDS["unit_scorecard"]["templating"]["list"]
    assert choice["name"] == "unit"
    assert choice["query"] == "label_values(mbs_unit_requests_total, unit)"
