"""Journeys end to end (issue 5): parallel steps, sagas, failover, versions, crashes, sharing."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.definitions import JOURNEYS_DIR
from tests.e2e.ecosystem import ADMIN, CALLER, Ecosystem, order, submit, wait_all
from tests.kafka_probe import Probe

pytestmark = pytest.mark.kafka
UNITS = ("pricing", "inventory", "payments", "fraud", "shipping", "notifications", "fastship")


@pytest.fixture(scope="module")
def eco(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecosystem]:
    ecosystem = Ecosystem(kafka_bootstrap, tmp_path_factory.mktemp("eco"))
    try:
        ecosystem.start_units(*UNITS)  # paylater stays down: the failover test needs that
        ecosystem.start_gateway()
        yield ecosystem
    finally:
        ecosystem.stop()


@pytest.fixture
def fresh(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Ecosystem]:
    ecosystem = Ecosystem(kafka_bootstrap, tmp_path)
    try:
        ecosystem.start_units(*UNITS)
        yield ecosystem
    finally:
        ecosystem.stop()


def run_journey(
    url: str, body: dict[str, Any], journey: str = "order-to-delivery"
) -> httpx.Response:
    return httpx.post(f"{url}/journeys/{journey}", json=body, headers=CALLER, timeout=60)


def steps_of(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in run["steps"]}


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


def test_business_error_before_side_effects_compensates_nothing(eco: Ecosystem) -> None:
    run = run_journey(eco.gateways["gateway"], order(2, sku="tamper-58mm")).json()
    assert run["error"]["code"] == "unknown_sku"
    assert all(s["compensation"] is None for s in run["steps"])


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


def charges_by_order(probe: Probe) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for replies in probe.replies.values():
        for body, hdrs in replies:
            if not hdrs.get("mbs-error") and hdrs.get("mbs-shadow") != "1":
                charge = json.loads(body)
                if "charge_id" in charge and "order_id" in charge:
                    found[charge["order_id"]].add(charge["charge_id"])
    return found


async def test_gateway_killed_mid_journeys_resumes_all_and_charges_once(
    fresh: Ecosystem, kafka_bootstrap: str
) -> None:
    count = 200
    url = fresh.start_gateway("gateway")
    orders = [order(i) for i in range(count)]
    async with (
        Probe(kafka_bootstrap, "mbs.replies.payments") as probe,
        httpx.AsyncClient(base_url=url, timeout=60) as client,
    ):
        locations = [await submit(client, "order-to-delivery", o) for o in orders]
        while len(charges_by_order(probe)) < count // 5:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        assert fresh.group is not None
        fresh.group.kill(fresh.process("gateway"))
        charged_before_kill = len(charges_by_order(probe))
        url = fresh.start_gateway("gateway-restarted")
        client.base_url = httpx.URL(url)
        runs = await wait_all(client, locations, 180)
        await asyncio.sleep(1)
        charges = charges_by_order(probe)
    assert charged_before_kill < count, "the kill must land mid-way for the test to mean much"
    assert [r["status"] for r in runs.values()].count("completed") == count
    assert all(len(charges[o["order_id"]]) == 1 for o in orders), "a card was charged twice"
    log = fresh.process("gateway-restarted").tail(400)
    assert re.search(r"resuming run", log), "the restarted gateway must have resumed runs"


async def test_two_gateways_share_the_work_exactly_once(
    fresh: Ecosystem, kafka_bootstrap: str
) -> None:
    count = 500
    urls = [fresh.start_gateway("gateway-a"), fresh.start_gateway("gateway-b")]
    orders = [order(i) for i in range(count)]
    async with Probe(kafka_bootstrap, "mbs.replies.payments") as probe:
        clients = [httpx.AsyncClient(base_url=u, timeout=60) for u in urls]
        try:
            locations = await asyncio.gather(
                *(submit(clients[i % 2], "order-to-delivery", o) for i, o in enumerate(orders))
            )
            runs = await wait_all(clients[0], list(locations), 240)
            finished = [await _journeys_counted(c) for c in clients]
        finally:
            for client in clients:
                await client.aclose()
        await asyncio.sleep(1)
        charges = charges_by_order(probe)
    assert [r["status"] for r in runs.values()].count("completed") == count
    assert all(len(charges[o["order_id"]]) == 1 for o in orders)
    assert sum(finished) == count, f"runs finished per gateway {finished}: each exactly once"
    assert all(n > 0 for n in finished), f"both gateways must work: {finished}"


async def _journeys_counted(client: httpx.AsyncClient) -> int:
    text = (await client.get("/metrics/")).text
    pattern = r'^mbs_journeys_total\{journey="order-to-delivery",.*\} (\S+)$'
    return int(sum(float(v) for v in re.findall(pattern, text, re.MULTILINE)))


async def test_an_uncertified_partner_gets_live_traffic_only_once_certified(
    fresh: Ecosystem, kafka_bootstrap: str
) -> None:
    assert fresh.group is not None
    certs = f"test.certifications.{uuid.uuid4().hex[:8]}"
    gated = {"MBS_REQUIRE_CERTIFICATION": "true", "MBS_CERTIFICATIONS_TOPIC": certs}
    fresh.group.env = {**fresh.group.env, **gated}
    url = fresh.start_gateway("gateway")
    before = run_journey(url, order(1)).json()
    assert before["status"] == "completed", before
    assert [c["unit"] for c in steps_of(before)["ship"]["calls"]] == ["shipping"], (
        "fastship is cheaper but uncertified: no live traffic"
    )
    verify = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "mbs",
            "contracts",
            "verify",
            "--unit",
            "fastship",
            "--samples",
            "10",
        ],
        env={**os.environ, **fresh.group.env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    await asyncio.sleep(4)  # the gateway re-reads certifications every 3 s
    after = run_journey(url, order(2)).json()
    assert after["status"] == "completed", after
    assert [c["unit"] for c in steps_of(after)["ship"]["calls"]] == ["fastship"]


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
