"""`mbs demo`: the whole path on one machine, from a clean clone, leaving nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from rich.markup import escape
from rich.table import Table

from mbs.broker import LocalBroker
from mbs.cli import console as mbs_console
from mbs.cli.processes import ProcessGroup, free_port, wait_http_ok
from mbs.errors import MbsError
from mbs.settings import Settings
from mbs.unit.ecosystem import Ecosystem

PARTNERS = ("fastship", "paylater")
API_KEY = {"X-API-Key": "dev-caller-key"}
_ORDER = {"customer_id": "cust-1", "country": "DE", "postcode": "10115", "card_token": "tok-4242"}
# (what it shows, the order): each sample exercises one behaviour of the platform
SAMPLE_ORDERS: list[tuple[str, dict[str, Any]]] = [
    (
        "happy path, FastShip is cheapest",
        {"order_id": "A-1001", "sku": "grinder-c40", "quantity": 1},
    ),
    ("volume discount", {"order_id": "A-1002", "sku": "espresso-beans-1kg", "quantity": 12}),
    (
        "FastShip refuses US: failover",
        {"order_id": "A-1003", "sku": "milk-jug-350ml", "quantity": 3, "country": "US"},
    ),
    (
        "card declined: stock released",
        {"order_id": "A-1004", "sku": "grinder-c40", "quantity": 1, "card_token": "tok-0000"},
    ),
    (
        "fraud blocks: stock released",
        {"order_id": "A-1005", "sku": "grinder-c40", "quantity": 1, "customer_id": "fraud-77"},
    ),
    ("out of stock", {"order_id": "A-1006", "sku": "descaler-500ml", "quantity": 2}),
]


def run_demo(
    ecosystem: Ecosystem,
    settings: Settings,
    *,
    journeys: int,
    say: Callable[[str], None],
    secure: bool = False,
) -> int:
    """Start everything, run `journeys` sample orders, print results and bills, stop everything.
    With `secure`: a SASL/SCRAM broker with ACLs, every process with its own principal."""
    signal.signal(signal.SIGTERM, _interrupt)
    broker = None if settings.kafka_bootstrap else LocalBroker(settings, secure=secure)
    started_broker = False
    port = free_port()
    group = ProcessGroup(
        settings.home / "demo",
        env={
            "MBS_GATEWAY_PORT": str(port),
            "MBS_KAFKA_BOOTSTRAP": settings.bootstrap,
            "MBS_UNIT_STATE_DIR": str(_fresh_unit_state(settings)),
        },
    )
    try:
        if broker is not None and not broker.status().running:
            started_broker = True  # before up(): a Ctrl-C while Kafka starts stops it too
            broker.up(progress=say)
        principal = _principals(ecosystem, broker, settings, say) if secure else (lambda _: {})
        units = ecosystem.unit_names()
        for unit in units:
            group.start(unit, "run", "unit", unit, env=principal(unit))
            say(f"started unit [bold]{unit}[/] (own process, log {group.log_dir / unit}.log)")
        _wait_ready(group, {unit: ecosystem.ports[unit] for unit in units}, say)
        gate = _certify_partners(broker, settings, group, say) if secure else {}
        group.start("gateway", "run", "gateway", env={**principal("gateway"), **gate})
        base = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{base}/readyz", group)
        say(f"gateway ready on {base} (OpenAPI at {base}/docs)")
        results = _run_orders(base, journeys, say)
        _print(results, {c.unit: c.kind for c in ecosystem.contracts()})
        return 0 if any(r["status"] == "completed" for r in results) else 1
    except KeyboardInterrupt:
        say("interrupted: stopping everything")
        return 130
    finally:
        _clean_up(group, broker if started_broker else None, say)


def _clean_up(group: ProcessGroup, broker: LocalBroker | None, say: Callable[[str], None]) -> None:
    """Stop what the demo started; a second Ctrl-C must not cut this short and leave a
    broker or a unit running, so SIGINT and SIGTERM wait until it is done."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        group.stop()
        say("units and gateway stopped")
        if broker is not None:
            broker.down(progress=say)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _principals(
    ecosystem: Ecosystem,
    broker: LocalBroker | None,
    settings: Settings,
    say: Callable[[str], None],
) -> Callable[[str], dict[str, str]]:
    """Provision the secure broker; then each process's own credentials by name."""
    from mbs.broker.provision import provision_ecosystem
    from mbs.broker.security import Credentials

    if broker is None:
        raise MbsError("--secure runs on the local broker; unset MBS_KAFKA_BOOTSTRAP")
    provision_ecosystem(broker, settings, ecosystem.contracts(), say)
    folder = broker.run_dir / "credentials"
    say(f"secure mode: each process connects as its own principal ({folder})")
    return lambda name: Credentials.load(folder, name).env()


def _fresh_unit_state(settings: Settings) -> Path:
    """Every demo starts from the opening stock and no remembered answers (units keep their
    state across restarts, so a shared directory would run a grinder out of stock by the
    twentieth demo)."""
    state = settings.home / "demo" / "units"
    shutil.rmtree(state, ignore_errors=True)
    return state


def _wait_ready(group: ProcessGroup, ports: dict[str, int], say: Callable[[str], None]) -> None:
    """Every unit serving before the first request: one still starting would miss the
    conformance kit's first request, and its start-up would slow the others' replies."""
    for port in ports.values():
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", group)
    say(f"{len(ports)} units ready")


def _certify_partners(
    broker: LocalBroker | None,
    settings: Settings,
    group: ProcessGroup,
    say: Callable[[str], None],
) -> dict[str, str]:
    """Run the conformance kit on each partner; the gateway then sends live traffic only to
    the certified ones (the others still get shadow copies)."""
    assert broker is not None
    admin = {
        "MBS_KAFKA_USERNAME": "admin",
        "MBS_KAFKA_PASSWORD": broker.admin_password(),
        "MBS_KAFKA_BOOTSTRAP": settings.bootstrap,
    }
    for partner in PARTNERS:
        say(f"conformance kit on partner [bold]{partner}[/] ...")
        done = subprocess.run(
            [
                *(sys.executable, "-m", "mbs", "contracts", "verify", "--unit", partner),
                *("--samples", "10", "--output", "json"),
            ],
            env={**os.environ, **admin},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        report = group.log_dir / f"conformance-{partner}.log"
        report.write_text(done.stdout + done.stderr)
        verdict = "certified" if done.returncode == 0 else "NOT certified (no live traffic)"
        say(f"  {partner}: {verdict}; the kit's report: {report}")
        if done.returncode != 0:
            for reason in _why_not_certified(done.stdout, done.stderr):
                say(f"    {escape(reason)}")
    return {"MBS_REQUIRE_CERTIFICATION": "true"}


def _why_not_certified(stdout: str, stderr: str, most: int = 5) -> list[str]:
    """The kit's violations (the first few), or how it failed when it could not run."""
    try:
        violations = json.loads(stdout)["violations"]
    except (ValueError, KeyError, TypeError):
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        return lines[-3:] or ["the kit printed nothing"]
    found = [
        f"{v['capability']} {v['case']}: expected {v['expected']}, got {v['got']}"
        for v in violations[:most]
    ]
    if len(violations) > most:
        found.append(f"... and {len(violations) - most} more")
    return found


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _run_orders(base: str, count: int, say: Callable[[str], None]) -> list[dict[str, Any]]:
    results = []
    with httpx.Client(base_url=base, timeout=60.0, headers=API_KEY) as client:
        for i in range(count):
            story, order = SAMPLE_ORDERS[i % len(SAMPLE_ORDERS)]
            order = {**_ORDER, **order, "order_id": f"{order['order_id']}-{i}"}
            response = client.post("/journeys/order-to-delivery", json=order)
            run = response.json()
            run["http_status"], run["story"] = response.status_code, story
            say(f"journey {i + 1}/{count} ({story}): {order['order_id']} -> {run.get('status')}")
            results.append(run)
        first = next((r for r in results if r.get("status") == "completed"), None)
        if first is not None:
            results.append(_return(client, first, say))
    return results


def _return(
    client: httpx.Client, order_run: dict[str, Any], say: Callable[[str], None]
) -> dict[str, Any]:
    steps = {s["id"]: s for s in order_run["steps"]}
    response = client.post(
        "/journeys/return-and-refund",
        json={
            "order_id": order_run["input"]["order_id"],
            "customer_id": order_run["input"]["customer_id"],
            "charge_id": steps["pay"]["output"]["charge_id"],
            "reservation_id": steps["reserve"]["output"]["reservation_id"],
        },
    )
    run: dict[str, Any] = response.json()
    run["http_status"], run["story"] = response.status_code, "return and refund"
    say(f"return of {order_run['input']['order_id']} -> {run.get('status')}")
    return run


def _print(results: list[dict[str, Any]], kinds: dict[str, str]) -> None:
    table = Table(
        title="Journeys (every step served by a separate unit process over Kafka)",
        caption="price: what the owning units charged (a partner: what we pay it); cost: what "
        "each unit reports as its own cost",
    )
    for column in (
        "journey / order",
        "shows",
        "HTTP",
        "status",
        "output / error",
        "steps: unit, latency",
        "price EUR",
        "cost EUR",
    ):
        table.add_column(column)
    totals: dict[str, list[Decimal]] = {}
    for run in results:
        bill = run.get("bill") or {}
        outcome = run.get("output") or run.get("error") or {}
        steps = "\n".join(_step_line(s) for s in run.get("steps", []))
        table.add_row(
            f"{run.get('journey', '?')}\n{run.get('input', {}).get('order_id', '?')}",
            run.get("story", ""),
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
    bills = Table(
        title="Bill by owning unit (all journeys above)",
        caption="margin: what an internal unit charged minus its own cost. A partner's price "
        "is what we pay it; its cost is the partner's own business (and only its word), so no "
        "margin is shown for it. A refused call (a business error) is billed nothing.",
    )
    for column in ("unit", "kind", "calls", "charged (price)", "its cost", "margin"):
        bills.add_column(column, justify="left" if column in ("unit", "kind") else "right")
    for unit, (calls, price, cost) in totals.items():
        kind = kinds.get(unit, "?")
        if kind == "partner":
            bills.add_row(unit, kind, str(calls), f"{price:.4f} EUR (we pay)", "-", "-")
        else:
            margin = f"{price - cost:.4f} EUR"
            bills.add_row(unit, kind, str(calls), f"{price:.4f} EUR", f"{cost:.4f} EUR", margin)
    mbs_console.show(table, bills)


def _step_line(step: dict[str, Any]) -> str:
    tried = [c["unit"] for c in step.get("calls", [])]
    who = " -> ".join(tried) if len(tried) > 1 else step.get("unit") or "-"
    timing = f" {step['latency_ms']:.0f}ms" if step.get("latency_ms") is not None else ""
    undo = " (undone)" if (step.get("compensation") or {}).get("outcome") == "ok" else ""
    status = "" if step["status"] == "ok" else f" {step['status']}"
    return f"{step['id']}: {who}{timing}{status}{undo}"


def _money(value: str | None) -> str:
    return "-" if value is None else f"{Decimal(value):.4f}"


def _styled(status: str) -> str:
    colour = {"completed": "green", "failed": "yellow", "timed_out": "red"}.get(status, "white")
    return f"[{colour}]{status}[/]"


def _short(outcome: dict[str, Any]) -> str:
    if "code" in outcome:
        return f"{outcome['step']}: {outcome['code']}\n{outcome.get('detail', '')}"
    return "\n".join(f"{k}={v}" for k, v in outcome.items() if k not in _NOISE)


_NOISE = frozenset({"charge_id", "reservation_id", "refund_id", "currency"})
