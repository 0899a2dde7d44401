"""Grafana building blocks: panels, rows, layout, variables, a dashboard."""

from __future__ import annotations

from collections.abc import Sequence

from mbs.contract.model import Contract
from mbs.dashboards.common import DATASOURCE, GENERATED, Json, Kind

# --- Grafana building blocks -----------------------------------------------------------


def _target(ref: int, expr: str, legend: str, kind: Kind) -> Json:
    target: Json = {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend,
        "refId": chr(ord("A") + ref),
    }
    if kind == "table":
        target.update(format="table", instant=True, range=False)
    return target


def _options(kind: Kind) -> Json:
    if kind == "stat":
        calcs = ["lastNotNull"]
        return {"reduceOptions": {"calcs": calcs, "fields": "", "values": False}}
    if kind == "table":
        return {"showHeader": True, "cellHeight": "sm"}
    return {
        "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def panel(
    title: str,
    exprs: Sequence[tuple[str, str]],
    *,
    unit: str = "short",
    kind: Kind = "timeseries",
    width: int = 12,
    height: int = 8,
    thresholds: Sequence[tuple[float, str]] = (),
) -> Json:
    """A panel of (expr, legend) queries; `layout` later gives it an id and a place."""
    steps = [{"color": "green", "value": None}] + [
        {"color": color, "value": value} for value, color in thresholds
    ]
    defaults: Json = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}}
    result: Json = {
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": _options(kind),
        "targets": [_target(i, expr, legend, kind) for i, (expr, legend) in enumerate(exprs)],
        "gridPos": {"w": width, "h": height},
    }
    if kind == "table":
        result["transformations"] = _table_columns(exprs)
    return result


def _table_columns(exprs: Sequence[tuple[str, str]]) -> list[Json]:
    """Merge instant queries into one row per series; name value columns by their legends."""
    names = {f"Value #{chr(ord('A') + i)}": legend for i, (_, legend) in enumerate(exprs)}
    organize = {"excludeByName": {"Time": True}, "renameByName": names}
    return [{"id": "merge", "options": {}}, {"id": "organize", "options": organize}]


def row(title: str, repeat: str | None = None) -> Json:
    """A row header; `repeat` names a multi-value variable to get one row per value."""
    result: Json = {"type": "row", "title": title, "collapsed": False, "panels": []}
    if repeat:
        result["repeat"] = repeat
    return result


def layout(panels: Sequence[Json]) -> list[Json]:
    """Number the panels and place them left to right, a row panel starting a new line."""
    placed, x, y, line = [], 0, 0, 0
    for number, item in enumerate(panels, start=1):
        w, h = (24, 1) if item["type"] == "row" else (item["gridPos"]["w"], item["gridPos"]["h"])
        if item["type"] == "row" or x + w > 24:
            x, y, line = 0, y + line, 0
        placed.append({**item, "id": number, "gridPos": {"x": x, "y": y, "w": w, "h": h}})
        x, line = x + w, max(line, h)
        if item["type"] == "row":
            x, y, line = 0, y + 1, 0
    return placed


def variable(
    name: str,
    query: str = "",
    *,
    options: Sequence[str] = (),
    default: Sequence[str] = (),
    multi: bool = False,
) -> Json:
    """A templating variable: from a label_values() query, or a fixed list of options."""
    chosen = list(default) or ["$__all"]
    shown = ["All" if value == "$__all" else value for value in chosen]
    current = {"text": shown if multi else shown[0], "value": chosen if multi else chosen[0]}
    result: Json = {
        "name": name,
        "label": name.capitalize(),
        "multi": multi,
        "includeAll": multi or not default,
        "allValue": ".+",
        "current": current,
    }
    if query:
        result.update(type="query", datasource=DATASOURCE, query=query, definition=query)
        return {**result, "refresh": 2, "sort": 1, "options": []}
    entries = [{"text": o, "value": o, "selected": o in chosen} for o in options]
    return {**result, "type": "custom", "query": ",".join(options), "options": entries}


def dashboard(uid: str, title: str, panels: Sequence[Json], variables: Sequence[Json] = ()) -> Json:
    """A Grafana dashboard (schema 39) on the provisioned Prometheus datasource."""
    return {
        "uid": uid,
        "title": title,
        "description": GENERATED,
        "tags": ["mbs", "generated"],
        "editable": False,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["mbs"], "title": "MBS", "asDropdown": True}],
        "templating": {"list": list(variables)},
        "panels": layout(panels),
    }


def _money_unit(contracts: Sequence[Contract], per: str = "") -> str:
    currencies = sorted({c.pricing.currency for c in contracts})
    return f"suffix: {currencies[0]}{per}" if len(currencies) == 1 else "short"
