"""The first journey end to end: unit processes, a gateway process, HTTP, the real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from mbs.testing import ProcessGroup, free_port, wait_http_ok

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def gateway_url(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    logs: Path = tmp_path_factory.mktemp("e2e-logs")
    group = ProcessGroup(
        logs,
        env={
            "MBS_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "MBS_GATEWAY_PORT": str(port),
            "MBS_UNIT_PORT": "0",
        },
    )
    try:
        for unit in ("pricing", "inventory"):
            group.start(unit, "run", "unit", unit)
        group.start("gateway", "run", "gateway")
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", group)
        yield f"http://127.0.0.1:{port}"
        group.check_alive()  # nothing crashed while the tests ran
    finally:
        group.stop()
    assert all(not child.alive() for child in group.children)


KEY = {"X-API-Key": "dev-caller-key"}


def post(url: str, body: object) -> httpx.Response:
    return httpx.post(f"{url}/journeys/quote-and-reserve", json=body, timeout=30, headers=KEY)


def test_journey_runs_across_unit_processes(gateway_url: str) -> None:
    response = post(gateway_url, {"order_id": "e2e-1", "sku": "milk-jug-350ml", "quantity": 2})
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "completed"
    assert run["output"]["total"] == "37.00"
    assert run["output"]["reservation_id"].startswith("res-")
    assert [(s["id"], s["unit"], s["status"]) for s in run["steps"]] == [
        ("quote", "pricing", "ok"),
        ("reserve", "inventory", "ok"),
    ]
    quote, reserve = run["steps"]
    assert reserve["started_ms"] >= quote["started_ms"] + quote["latency_ms"] - 1
    bill = run["bill"]
    assert Decimal(bill["total_price"]) == sum(Decimal(s["price"]) for s in run["steps"])
    assert Decimal(bill["total_cost"]) == sum(Decimal(s["cost"]) for s in run["steps"])
    assert {line["unit"] for line in bill["by_unit"]} == {"pricing", "inventory"}
    fetched = httpx.get(gateway_url + response.headers["location"], headers=KEY).json()
    assert fetched["run_id"] == run["run_id"]
    assert fetched["status"] == "completed"


def test_business_error_is_409_with_the_failing_step(gateway_url: str) -> None:
    response = post(gateway_url, {"order_id": "e2e-2", "sku": "descaler-500ml", "quantity": 1})
    assert response.status_code == 409
    run = response.json()
    assert run["error"]["step"] == "reserve"
    assert run["error"]["code"] == "out_of_stock"
    assert Decimal(run["bill"]["total_price"]) == Decimal(run["steps"][0]["price"])


def test_bad_requests_get_4xx_naming_the_problem(gateway_url: str) -> None:
    missing = post(gateway_url, {"order_id": "e2e-3"})
    assert missing.status_code == 422
    assert "quantity" in missing.json()["detail"]
    assert "sku" in missing.json()["detail"]
    unknown = httpx.post(f"{gateway_url}/journeys/no-such-journey", json={}, headers=KEY)
    assert unknown.status_code == 404
    assert "quote-and-reserve" in unknown.json()["detail"]
    not_object = post(gateway_url, [1, 2])
    assert not_object.status_code == 422


def test_async_start_returns_202_and_the_run_finishes(gateway_url: str) -> None:
    response = httpx.post(
        f"{gateway_url}/journeys/quote-and-reserve",
        json={"order_id": "e2e-4", "sku": "espresso-beans-1kg", "quantity": 1},
        headers={"Prefer": "respond-async", **KEY},
    )
    assert response.status_code == 202
    location = gateway_url + response.headers["location"]
    deadline = time.monotonic() + 20
    status = "running"
    while status in ("running", "compensating", "unseen") and time.monotonic() < deadline:
        polled = httpx.get(location, headers=KEY)
        status = polled.json()["status"] if polled.status_code == 200 else "unseen"
        time.sleep(0.05)
    assert status == "completed"


async def test_concurrent_journeys_all_complete(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30, headers=KEY) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/journeys/quote-and-reserve",
                    json={"order_id": f"c-{i}", "sku": "espresso-beans-1kg", "quantity": 1},
                )
                for i in range(20)
            )
        )
    assert [r.status_code for r in responses] == [200] * 20
    assert len({r.json()["output"]["reservation_id"] for r in responses}) == 20
