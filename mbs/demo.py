"""`mbs demo`: the whole path on one machine, from a clean clone, leaving nothing behind."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from decimal import Decimal
from types import FrameType
from typing import Any

import httpx
from rich.table import Table

from mbs import console as mbs_console
from mbs.broker import LocalBroker
from mbs.processes import ProcessGroup, free_port, wait_http_ok
from mbs.settings import Settings

UNITS = ("pricing", "inventory")
SAMPLE_ORDERS: list[dict[str, Any]] = [
    {"order_id": "A-1001", "sku": "grinder-c40", "quantity": 1},
    {"order_id": "A-1002", "sku": "espresso-beans-1kg", "quantity": 12},
    {"order_id": "A-1003", "sku": "milk-jug-350ml", "quantity": 3},
    {"order_id": "A-1004", "sku": "descaler-500ml", "quantity": 2},
    {"order_id": "A-1005", "sku": "grinder-c40", "quantity": 25},
    {"order_id": "A-1006", "sku": "tamper-58mm", "quantity": 1},
]


def run_demo(settings: Settings, *, journeys: int, say: Callable[[str], None]) -> int:
    """Start everything, run `journeys` sample orders, print results and bills, stop everything."""
    signal.signal(signal.SIGTERM, _interrupt)
    broker = None if settings.kafka_bootstrap else LocalBroker(settings)
    started_broker = False
    port = free_port()
    group = ProcessGroup(
        settings.home / "demo",
        env={"MBS_GATEWAY_PORT": str(port), "MBS_KAFKA_BOOTSTRAP": settings.bootstrap},
    )
    try:
        if broker is not None and not broker.status().running:
            broker.up(progress=say)
            started_broker = True
        for unit in UNITS:
            group.start(unit, "run", "unit", unit)
            say(f"started unit [bold]{unit}[/] (own process, log {group.log_dir / unit}.log)")
        group.start("gateway", "run", "gateway")
        base = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{base}/readyz", group)
        say(f"gateway ready on {base} (OpenAPI at {base}/docs)")
        results = _run_orders(base, journeys, say)
        _print(results)
        return 0 if any(r["status"] == "completed" for r in results) else 1
    except KeyboardInterrupt:
        say("interrupted: stopping everything")
        return 130
    finally:
        group.stop()
        say("units and gateway stopped")
        if started_broker and broker is not None:
            broker.down(progress=say)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _run_orders(base: str, count: int, say: Callable[[str], None]) -> list[dict[str, Any]]:
    results = []
    with httpx.Client(base_url=base, timeout=30.0) as client:
        for i in range(count):
            order = SAMPLE_ORDERS[i % len(SAMPLE_ORDERS)]
            started = time.perf_counter()
            response = client.post("/journeys/quote-and-reserve", json=order)
            run = response.json()
            run["http_status"] = response.status_code
            run["wall_ms"] = (time.perf_counter() - started) * 1000
            say(f"journey {i + 1}/{count}: {order['order_id']} -> {run.get('status')}")
            results.append(run)
    return results


def _print(results: list[dict[str, Any]]) -> None:
    console = mbs_console.stdout()
    table = Table(title="Journeys: quote-and-reserve (each step a separate unit process)")
    for column in (
        "order",
        "HTTP",
        "status",
        "output / error",
        "step latency",
        "price EUR",
        "cost EUR",
    ):
        table.add_column(column)
    totals: dict[str, list[Decimal]] = {}
    for run in results:
        bill = run.get("bill") or {}
        outcome = run.get("output") or run.get("error") or {}
        steps = "\n".join(
            f"{s['id']} {s['latency_ms']:.1f}ms"
            if s.get("latency_ms") is not None
            else f"{s['id']} {s['status']}"
            for s in run.get("steps", [])
        )
        table.add_row(
            run.get("input", {}).get("order_id", "?"),
            str(run["http_status"]),
            _styled(run.get("status", "?")),
            _short(outcome),
            steps,
            _money(bill.get("total_price")),
            _money(bill.get("total_cost")),
        )
        for line in bill.get("by_unit", []):
            agg = totals.setdefault(line["unit"], [Decimal(0), Decimal(0), Decimal(0)])
            agg[0] += line["calls"]
            agg[1] += Decimal(line["price"])
            agg[2] += Decimal(line["cost"])
    console.print(table)
    bills = Table(title="Bill by owning unit (all journeys above)")
    for column in ("unit", "calls", "charged (price)", "cost", "margin"):
        bills.add_column(column, justify="right" if column != "unit" else "left")
    for unit, (calls, price, cost) in totals.items():
        bills.add_row(
            unit, str(calls), f"{price:.4f} EUR", f"{cost:.4f} EUR", f"{price - cost:.4f} EUR"
        )
    console.print(bills)


def _money(value: str | None) -> str:
    return "-" if value is None else f"{Decimal(value):.4f}"


def _styled(status: str) -> str:
    colour = {"completed": "green", "failed": "yellow", "timed_out": "red"}.get(status, "white")
    return f"[{colour}]{status}[/]"


def _short(outcome: dict[str, Any]) -> str:
    if "code" in outcome:
        return f"{outcome['step']}: {outcome['code']}\n{outcome.get('detail', '')}"
    return "\n".join(f"{k}={v}" for k, v in outcome.items() if not k.endswith("_id"))
