"""The ecosystem as separate processes for end-to-end tests: units, one or more gateways."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mbs import UnitStore
from mbs.testing import Process, ProcessGroup, free_port, wait_http_ok
from services.inventory.handlers import Stock
from services.payments.handlers import CardLedger
from tests.conftest import private_topics

CALLER = {"X-API-Key": "dev-caller-key"}
TERMINAL = ("completed", "failed", "timed_out", "compensation_failed")
UNITS = ("pricing", "inventory", "payments", "fraud", "shipping", "notifications", "fastship")
ADMIN = {"X-API-Key": "dev-admin-key"}


def order(i: int, **overrides: Any) -> dict[str, Any]:
    """An order-to-delivery input that succeeds unless overridden."""
    return {
        "order_id": f"e2e-{uuid.uuid4().hex[:8]}-{i}",
        "sku": "espresso-beans-1kg",
        "quantity": 1,
        "customer_id": "cust-1",
        "country": "DE",
        "postcode": "10115",
        "card_token": "tok-4242",
        **overrides,
    }


@dataclass
class Ecosystem:
    """Units and gateways sharing one private journey log, definitions and registry."""

    bootstrap: str
    log_dir: Path
    topics: dict[str, str] = field(default_factory=lambda: private_topics(uuid.uuid4().hex[:10]))
    extra_env: dict[str, str] = field(default_factory=dict)
    group: ProcessGroup | None = None
    gateways: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Units take any free ops port and keep their state in this ecosystem's own
        directory, unless `extra_env` says otherwise."""
        self.group = ProcessGroup(
            self.log_dir,
            env={
                "MBS_KAFKA_BOOTSTRAP": self.bootstrap,
                "MBS_UNIT_PORT": "0",
                "MBS_UNIT_STATE_DIR": str(self.state_dir),
                **self.topics,
                **self.extra_env,
            },
        )

    @property
    def state_dir(self) -> Path:
        """Where this ecosystem's units keep their state (`<unit>.sqlite3`)."""
        return self.log_dir / "units"

    def start_units(self, *names: str) -> None:
        assert self.group is not None
        for name in names:
            self.group.start(name, "run", "unit", name)

    def start_gateway(self, name: str = "gateway", port: int = 0) -> str:
        assert self.group is not None
        port = port or free_port()
        self.group.env = {**self.group.env, "MBS_GATEWAY_PORT": str(port)}
        self.group.start(name, "run", "gateway")
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/readyz", self.group, timeout_s=90)
        self.gateways[name] = url
        return url

    def wait_serving(self, unit: str, topics: list[str], timeout_s: float = 60) -> None:
        """Until `unit`'s consumers hold partitions of every topic (a restarted unit waits
        for its group to drop the dead member first; requests sent before would wait too)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            log = self.process(unit).log_file.read_text(errors="replace")
            if all(f"topic='{topic}'" in log for topic in topics):
                return
            time.sleep(0.2)
        raise AssertionError(f"{unit} got no partitions of {topics} in {timeout_s:g}s")

    def process(self, name: str) -> Process:
        assert self.group is not None
        return next(c for c in reversed(self.group.children) if c.name == name)

    def stop(self) -> None:
        if self.group is not None:
            self.group.stop()


async def submit(client: httpx.AsyncClient, journey: str, body: dict[str, Any]) -> str:
    """Start a journey without waiting; returns its run location."""
    response = await client.post(
        f"/journeys/{journey}", json=body, headers={**CALLER, "Prefer": "respond-async"}
    )
    assert response.status_code == 202, response.text
    return str(response.headers["location"])


async def wait_all(
    client: httpx.AsyncClient, locations: list[str], timeout_s: float, *, settled: bool = False
) -> dict[str, dict[str, Any]]:
    """Poll every run until its outcome is known (`settled`: and every call it made is
    settled, nothing left `unsettled`); fails listing what is still open."""
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    while len(done) < len(locations):
        for location in [loc for loc in locations if loc not in done]:
            response = await client.get(location, headers=CALLER)
            run = response.json() if response.status_code == 200 else {}
            decided = run.get("status") in TERMINAL
            if decided and not (settled and run.get("unsettled")):
                done[location] = run
        if time.monotonic() > deadline:
            open_runs = len(locations) - len(done)
            raise AssertionError(f"{open_runs} of {len(locations)} runs did not finish")
        await asyncio.sleep(0.2)
    return done


def run_journey(
    url: str, body: dict[str, Any], journey: str = "order-to-delivery"
) -> httpx.Response:
    return httpx.post(f"{url}/journeys/{journey}", json=body, headers=CALLER, timeout=60)


def steps_of(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in run["steps"]}


Payments = tuple[dict[str, list[str]], set[str]]


def payments_ledger(eco: Ecosystem) -> Payments:
    """Charge ids by order id, and the refunded charge ids, from the payments unit's store."""
    store = UnitStore.open(eco.state_dir / "payments.sqlite3")
    try:
        ledger = CardLedger(store)
        charges: dict[str, list[str]] = {}
        for charge in ledger.charges.values():
            charges.setdefault(charge.order_id, []).append(charge.charge_id)
        return charges, {refund.charge_id for refund in ledger.refunds.values()}
    finally:
        store.close()


def stock(eco: Ecosystem, sku: str) -> int:
    """Units of `sku` on hand, from the inventory unit's own store."""
    store = UnitStore.open(eco.state_dir / "inventory.sqlite3")
    try:
        return Stock(store).available(sku) or 0
    finally:
        store.close()
