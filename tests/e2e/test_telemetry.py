"""Telemetry end to end (issue 6): one trace per journey across every process, bills that
equal what the units reported, and a real Prometheus scraping the running ecosystem."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

import services
from gateway.definition import JOURNEYS_DIR
from mbs import dashboards
from mbs.testing import free_port
from tests.conftest import require_tool
from tests.e2e.ecosystem import ADMIN, CALLER, Ecosystem, order
from tests.kafka_probe import Probe

pytestmark = pytest.mark.kafka
UNITS = ("pricing", "inventory", "payments", "fraud", "shipping", "notifications", "fastship")


class Collector:
    """A real OTLP/HTTP trace receiver: decodes what the processes export."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as exporters expect of a collector

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.receive(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def receive(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    with self.lock:
                        self.spans.append(
                            {
                                "service": resource.get("service.name"),
                                "name": span.name,
                                "trace": span.trace_id.hex(),
                                "span": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "attributes": {a.key: _value(a.value) for a in span.attributes},
                            }
                        )

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [s for s in self.spans if s["trace"] == trace_id]


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    found = Collector()
    yield found
    found.server.shutdown()


@pytest.fixture(scope="module")
def ops_ports() -> dict[str, int]:
    """An ops port per unit, free now (the fixed 9101-9202 may be taken on a shared host);
    units not started get one too, where nothing answers, as a stopped unit would."""
    return {unit: free_port() for unit in services.PORTS}


@pytest.fixture(scope="module")
def eco(
    kafka_bootstrap: str,
    collector: Collector,
    tmp_path_factory: pytest.TempPathFactory,
    ops_ports: dict[str, int],
) -> Iterator[Ecosystem]:
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
    }
    ecosystem = Ecosystem(kafka_bootstrap, tmp_path_factory.mktemp("telemetry"), extra_env=env)
    assert ecosystem.group is not None
    try:
        for unit in UNITS:  # each on the ops port Prometheus is told to scrape
            port = {"MBS_UNIT_PORT": str(ops_ports[unit])}
            ecosystem.group.start(unit, "run", "unit", unit, env=port)
        ecosystem.start_gateway()
        yield ecosystem
    finally:
        ecosystem.stop()


def scrape_config(gateway_port: int, ops_ports: dict[str, int]) -> dict[str, Any]:
    """The generated local scrape config, with each unit at the port this test gave it."""
    config = dashboards.prometheus_config(gateway_port=gateway_port)
    for job in config["scrape_configs"]:
        for target in job["static_configs"]:
            unit = target.get("labels", {}).get("unit")
            if unit in ops_ports:
                target["targets"] = [f"127.0.0.1:{ops_ports[unit]}"]
    return config


def test_one_trace_holds_every_process_of_a_journey(eco: Ecosystem, collector: Collector) -> None:
    response = httpx.post(
        f"{eco.gateways['gateway']}/journeys/order-to-delivery",
        json=order(1),
        headers=CALLER,
        timeout=60,
    )
    run = response.json()
    assert run["status"] == "completed", run
    deadline = time.monotonic() + 30
    expected = {"mbs-gateway"} | {
        f"mbs-unit-{u}"
        for u in ("pricing", "inventory", "fraud", "payments", "fastship", "notifications")
    }
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        roots = [
            s for s in collector.spans if s["attributes"].get("mbs.journey.id") == run["run_id"]
        ]
        spans = collector.trace(roots[0]["trace"]) if roots else []
        if expected <= {s["service"] for s in spans}:
            break
        time.sleep(0.3)
    assert expected <= {s["service"] for s in spans}, {s["service"] for s in spans}
    [root] = [s for s in spans if s["parent"] == ""]
    assert root["service"] == "mbs-gateway", "the trace starts at the gateway's HTTP request"
    ids = {s["span"] for s in spans}
    assert all(s["parent"] in ids for s in spans if s is not root), "one connected tree"
    unit_spans = [
        s for s in spans if s["service"].startswith("mbs-unit-") and "mbs.cost" in s["attributes"]
    ]
    for span in unit_spans:
        assert span["attributes"]["mbs.unit"] == span["service"].removeprefix("mbs-unit-")
    steps = [s for s in spans if s["name"].startswith("step ")]
    assert {s["attributes"]["mbs.capability"] for s in steps} >= {
        "pricing.quote",
        "inventory.reserve",
        "fraud.score",
        "payments.charge",
        "shipping.book",
        "notifications.send",
    }
    reported = sum(Decimal(str(s["attributes"]["mbs.cost"])) for s in unit_spans)
    assert abs(reported - Decimal(run["bill"]["total_cost"])) < Decimal("0.000001") * 10, (
        "the bill's cost equals the sum of the costs the units reported"
    )


def test_prometheus_scrape_feeds_every_dashboard_query(
    eco: Ecosystem, tmp_path: Path, ops_ports: dict[str, int]
) -> None:
    prometheus = require_tool("prometheus", "apt-get install prometheus")
    url = eco.gateways["gateway"]
    gateway_port = int(url.rsplit(":", 1)[1])
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(scrape_config(gateway_port, ops_ports)))
    for rules in ("recording.rules.yml", "alerts.rules.yml"):
        shutil.copy(Path("deploy/prometheus") / rules, tmp_path / rules)
    port = free_port()
    server = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _put_shadow_journey(url)
        asyncio.run(_malformed(eco.bootstrap))  # the DLQ series needs a dead letter
        asyncio.run(_traffic(url, seconds=25))
        empty = _wait_for_series(f"http://127.0.0.1:{port}", timeout_s=60)
    finally:
        server.terminate()
        server.wait(30)
    assert empty == [], f"{len(empty)} queries returned no series:\n" + "\n".join(empty)


def _put_shadow_journey(url: str) -> None:
    definition = yaml.safe_load((JOURNEYS_DIR / "order-to-delivery.yaml").read_text())
    definition["name"] = "shadowed"
    ship = next(s for s in definition["steps"] if s["id"] == "ship")
    ship["providers"] = {"policy": "fixed", "units": ["shipping"], "shadow": "fastship"}
    response = httpx.put(f"{url}/journeys/shadowed", content=json.dumps(definition), headers=ADMIN)
    assert response.status_code in (201, 409), response.text


async def _traffic(url: str, seconds: float) -> None:
    stop_at = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=CALLER) as client:

        async def loop(journey: str, body: dict[str, Any]) -> None:
            while time.monotonic() < stop_at:
                await client.post(f"/journeys/{journey}", json=body)
                await asyncio.sleep(0.05)

        await asyncio.gather(
            loop("order-to-delivery", order(1)),
            loop("shadowed", order(2)),
            loop("order-to-delivery", order(3, card_token="tok-0000")),
            loop("order-to-delivery", order(4, country="US")),
        )


async def _malformed(bootstrap: str) -> None:
    async with Probe(bootstrap, "mbs.replies.pricing") as probe:
        for _ in range(3):
            await probe.send("pricing.quote.v2", {"sku": "grinder-c40", "quantity": -1})
        await probe.flush()


def _wait_for_series(base: str, timeout_s: float) -> list[str]:
    """Ask until every query has a series (scrapes and rule evaluations come every 5 s), or
    the time is up; the queries still empty then."""
    deadline = time.monotonic() + timeout_s
    while (empty := _empty_queries(base)) and time.monotonic() < deadline:
        time.sleep(1)
    return empty


def _empty_queries(base: str) -> list[str]:
    queries = [
        q for board in dashboards.dashboards().values() for q in dashboards.panel_queries(board)
    ]
    queries += dashboards.recording_rule_names()
    empty = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for query in sorted(set(queries)):
            result = client.get("/api/v1/query", params={"query": query}).json()
            if result.get("status") != "success" or not result["data"]["result"]:
                empty.append(query)
    return empty


def test_scorecards_and_make_or_buy_from_measured_traffic(eco: Ecosystem) -> None:
    url = eco.gateways["gateway"]
    _put_shadow_journey(url)
    asyncio.run(_traffic(url, seconds=3))
    card = httpx.get(f"{url}/scorecard", headers=CALLER).json()
    units = {u["unit"]: u for u in card["units"]}
    pricing = units["pricing"]
    assert pricing["calls"] > 0
    assert Decimal(pricing["margin"]) == Decimal(pricing["revenue"]) - Decimal(pricing["cost"])
    [quote] = pricing["capabilities"]
    assert quote["p50_ms"] is not None
    assert quote["sla_p99_ms"] == 50
    one = httpx.get(f"{url}/units/payments/scorecard", headers=CALLER).json()
    assert one["unit"] == "payments"
    assert httpx.get(f"{url}/units/nobody/scorecard", headers=CALLER).status_code == 404
    shipping = next(c for c in card["capabilities"] if c["capability"] == "shipping.book")
    fastship = next(p for p in shipping["providers"] if p["unit"] == "fastship")
    assert fastship["shadow_comparisons"] > 0, "the shadowed journey compared fastship"
    env = {**os.environ, "MBS_GATEWAY_URL": url}
    shown = subprocess.run(
        [sys.executable, "-m", "mbs", "make-or-buy", "shipping.book"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "fastship" in shown.stdout
    assert "shipping" in shown.stdout
    assert "verdict:" in shown.stdout
    table = subprocess.run(
        [sys.executable, "-m", "mbs", "scorecard"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert table.returncode == 0, table.stderr
    assert "notifications.send" in table.stdout
    ledger = httpx.get(f"{url}/ledger", headers=CALLER).json()
    owed = [r for r in ledger if r["unit"] == "fastship"]
    assert owed
    assert owed[0]["kind"] == "partner"
    assert sum(Decimal(r["charged"]) for r in owed) > 0
    settled = subprocess.run(
        [sys.executable, "-m", "mbs", "ledger"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert settled.returncode == 0, settled.stderr
    assert "we pay" in settled.stdout
