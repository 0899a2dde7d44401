"""Journeys end to end (issue 5): parallel steps, sagas, failover, versions, crashes, sharing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import contracts
from gateway.definition import JOURNEYS_DIR
from tests.e2e.ecosystem import (
    ADMIN,
    CALLER,
    UNITS,
    Ecosystem,
    order,
    run_journey,
    steps_of,
    submit,
    wait_all,
)

pytestmark = pytest.mark.kafka
# Who serves a happy order-to-delivery: FastShip is the cheaper carrier for DE.
ORDER_SERVED = [
    ("pricing.quote", "pricing"),
    ("inventory.reserve", "inventory"),
    ("fraud.score", "fraud"),
    ("payments.charge", "payments"),
    ("shipping.book", "fastship"),
    ("notifications.send", "notifications"),
]


def declared(*served: tuple[str, str]) -> Decimal:
    """The contracts' `price_per_call` of each (capability, unit) that served a call: what a
    bill must total, whatever its own lines add up to."""
    prices = {(c.capability, c.unit): c.pricing.price_per_call for c in contracts.all_contracts()}
    return sum((prices[call] for call in served), Decimal(0))


def billed(run: dict[str, Any]) -> Decimal:
    return Decimal(run["bill"]["total_price"])


def served_by(run: dict[str, Any]) -> list[tuple[str, str]]:
    """Each step's capability and the unit that served it, then each undo that was done."""
    served = [(s["capability"], s["unit"]) for s in run["steps"] if s["status"] == "ok"]
    undone = [s["compensation"] for s in run["steps"] if s["compensation"]]
    return served + [(c["capability"], c["unit"]) for c in undone if c["outcome"] == "ok"]


@pytest.fixture(scope="module")
def eco(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecosystem]:
    ecosystem = Ecosystem(kafka_bootstrap, tmp_path_factory.mktemp("eco"))
    try:
        ecosystem.start_units(*UNITS)  # paylater stays down: the failover test needs that
        ecosystem.start_gateway()
        yield ecosystem
    finally:
        ecosystem.stop()


def test_independent_steps_overlap_in_time(eco: Ecosystem) -> None:
    overlaps = 0
    for i in range(5):  # timing on 2 busy cores: most runs must overlap, not every one
        run = run_journey(eco.gateways["gateway"], order(i)).json()
        assert run["status"] == "completed", run
        steps = steps_of(run)
        reserve, fraud = steps["reserve"], steps["fraud"]
        reserve_end = reserve["started_ms"] + reserve["latency_ms"]
        fraud_end = fraud["started_ms"] + fraud["latency_ms"]
        overlaps += reserve["started_ms"] < fraud_end and fraud["started_ms"] < reserve_end
        assert steps["pay"]["started_ms"] >= max(reserve_end, fraud_end) - 1
        assert served_by(run) == ORDER_SERVED
        assert billed(run) == declared(*ORDER_SERVED), run["bill"]
    assert overlaps >= 4, f"reserve and fraud overlapped in only {overlaps} of 5 runs"


def test_failure_compensates_completed_steps_in_reverse_order(eco: Ecosystem) -> None:
    response = run_journey(eco.gateways["gateway"], order(1, country="US", postcode="99501"))
    assert response.status_code == 409
    run = response.json()
    steps = steps_of(run)
    assert run["error"]["step"] == "ship"
    assert run["error"]["code"] == "address_unserviceable"
    assert [c["unit"] for c in steps["ship"]["calls"]] == ["fastship", "shipping"]
    undone = {k: s["compensation"] for k, s in steps.items() if s["compensation"]}
    assert set(undone) == {"reserve", "pay"}, "only completed side-effecting steps are undone"
    assert undone["pay"]["capability"] == "payments.refund"
    assert undone["reserve"]["capability"] == "inventory.release"
    assert all(c["outcome"] == "ok" for c in undone.values())
    assert undone["pay"]["started_ms"] < undone["reserve"]["started_ms"], "newest first"
    assert steps["notify"]["status"] == "skipped"
    assert run["compensated"] is True
    prices = {line["step"] for line in run["bill"]["by_step"]}
    assert {"pay.compensate", "reserve.compensate"} <= prices
    kept_then_undone = [*ORDER_SERVED[:4], ("payments.refund", "payments")]
    kept_then_undone.append(("inventory.release", "inventory"))
    assert billed(run) == declared(*kept_then_undone), "refusals billed nothing, undos their price"


def test_business_error_before_side_effects_compensates_nothing(eco: Ecosystem) -> None:
    run = run_journey(eco.gateways["gateway"], order(2, sku="tamper-58mm")).json()
    assert run["error"]["code"] == "unknown_sku"
    assert all(s["compensation"] is None for s in run["steps"])
    assert billed(run) == 0, "a refused quote earns nothing"


def test_failover_when_a_provider_is_down(eco: Ecosystem) -> None:
    url = eco.gateways["gateway"]
    definition = yaml.safe_load((JOURNEYS_DIR / "order-to-delivery.yaml").read_text())
    definition["name"] = "pay-with-fallback"
    pay = next(s for s in definition["steps"] if s["id"] == "pay")
    pay["providers"] = {"policy": "failover", "units": ["paylater", "payments"]}
    pay["timeout"], pay["retry"] = 1, {"attempts": 1}
    put = httpx.put(
        f"{url}/journeys/pay-with-fallback", content=json.dumps(definition), headers=ADMIN
    )
    assert put.status_code == 201, put.text
    run = run_journey(url, order(3), "pay-with-fallback").json()
    assert run["status"] == "completed", run
    calls = steps_of(run)["pay"]["calls"]
    assert [(c["unit"], c["outcome"]) for c in calls] == [
        ("paylater", "timeout"),
        ("payments", "ok"),
    ]
    assert run["output"]["charge_id"].startswith("ch-")
    assert billed(run) == declared(*ORDER_SERVED), "the silent partner bills nothing"


async def test_new_version_goes_live_under_traffic(eco: Ecosystem) -> None:
    url = eco.gateways["gateway"]
    definition = yaml.safe_load((JOURNEYS_DIR / "quote-and-reserve.yaml").read_text())
    definition["name"] = "versioned"
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        first = await client.put(
            "/journeys/versioned", content=json.dumps(definition), headers=ADMIN
        )
        assert first.status_code == 201, first.text
        body = {"order_id": "v", "sku": "espresso-beans-1kg", "quantity": 1}
        before = await asyncio.gather(*(submit(client, "versioned", body) for _ in range(20)))
        definition["version"] = 2
        definition["output"]["version_two"] = "$steps.quote.unit_price"
        second = await client.put(
            "/journeys/versioned", content=json.dumps(definition), headers=ADMIN
        )
        assert second.status_code == 201, second.text
        after = await asyncio.gather(*(submit(client, "versioned", body) for _ in range(20)))
        runs = await wait_all(client, before + after, 60)
        stale = await client.put(
            "/journeys/versioned", content=json.dumps(definition), headers=ADMIN
        )
        listed = (await client.get("/journeys", headers=CALLER)).json()
    assert stale.status_code == 409
    assert all(runs[loc]["status"] == "completed" for loc in before + after)
    assert {runs[loc]["version"] for loc in before} == {1}
    assert {runs[loc]["version"] for loc in after} == {2}
    assert all("version_two" in runs[loc]["output"] for loc in after)
    assert all("version_two" not in runs[loc]["output"] for loc in before)
    entry = next(j for j in listed if j["name"] == "versioned")
    assert (entry["live_version"], entry["versions"]) == (2, [1, 2])
    quote_and_reserve = declared(("pricing.quote", "pricing"), ("inventory.reserve", "inventory"))
    assert {billed(runs[loc]) for loc in before + after} == {quote_and_reserve}


def test_shadow_replies_are_scored_never_used(eco: Ecosystem) -> None:
    url = eco.gateways["gateway"]
    definition = yaml.safe_load((JOURNEYS_DIR / "order-to-delivery.yaml").read_text())
    definition["name"] = "shadow-ship"
    ship = next(s for s in definition["steps"] if s["id"] == "ship")
    ship["providers"] = {"policy": "fixed", "units": ["shipping"], "shadow": "fastship"}
    put = httpx.put(f"{url}/journeys/shadow-ship", content=json.dumps(definition), headers=ADMIN)
    assert put.status_code == 201, put.text
    runs = [run_journey(url, order(i), "shadow-ship").json() for i in range(3)]
    for run in runs:
        assert run["status"] == "completed", run
        assert run["output"]["carrier"] == "DHL", "the customer gets the primary's booking"
        assert run["output"]["tracking_number"].startswith("MBS")
        assert all(line["unit"] != "fastship" for line in run["bill"]["by_step"])
        in_house = [(c, "shipping" if u == "fastship" else u) for c, u in ORDER_SERVED]
        assert billed(run) == declared(*in_house), "the shadow's dry run is billed nothing"
    card = httpx.get(f"{url}/scorecard", headers=CALLER).json()
    shipping = next(c for c in card["capabilities"] if c["capability"] == "shipping.book")
    fastship = next(p for p in shipping["providers"] if p["unit"] == "fastship")
    assert fastship["shadow_comparisons"] >= 1


def test_api_keys_and_roles(eco: Ecosystem) -> None:
    url = eco.gateways["gateway"]
    body = order(9)
    missing = httpx.post(f"{url}/journeys/order-to-delivery", json=body)
    assert missing.status_code == 401
    assert "X-API-Key" in missing.json()["detail"]
    unknown = httpx.post(
        f"{url}/journeys/order-to-delivery", json=body, headers={"X-API-Key": "guess"}
    )
    assert unknown.status_code == 401
    definition = (JOURNEYS_DIR / "quote-and-reserve.yaml").read_text()
    caller_put = httpx.put(f"{url}/journeys/quote-and-reserve", content=definition, headers=CALLER)
    assert caller_put.status_code == 403
    assert "admin" in caller_put.json()["detail"]
    partner = {"X-API-Key": "dev-fastship-key"}
    foreign = Path("contracts/partners/paylater.json").read_text()
    refused = httpx.post(f"{url}/contracts", content=foreign, headers=partner)
    assert refused.status_code == 403, "a partner registers only its own contracts"
    own = httpx.post(
        f"{url}/contracts",
        content=Path("contracts/partners/fastship.json").read_text(),
        headers=partner,
    )
    assert own.status_code == 201, own.text
    assert httpx.get(f"{url}/healthz").status_code == 200
