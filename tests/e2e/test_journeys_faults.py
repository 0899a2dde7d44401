"""Journeys under faults, end to end: a gateway killed mid-stream, two gateways sharing the
work, sagas that never leak (fraud blocks, declined cards, units stopped and restarted).

Each test starts its own ecosystem, with its own unit state, and none runs beside another
(a module-scoped one would share consumer groups with it and take its requests)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections import defaultdict

import httpx
import pytest

from tests.e2e.ecosystem import (
    ADMIN,
    Ecosystem,
    order,
    payments_ledger,
    run_journey,
    steps_of,
    stock,
    submit,
    wait_all,
)
from tests.kafka_probe import Probe

pytestmark = pytest.mark.kafka


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
        while len(charges_by_order(probe)) < count // 20:  # noqa: ASYNC110
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
    assert re.search(r"resuming run", log), (
        f"no run resumed ({charged_before_kill} charged at the kill)"
    )


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
    text = (await client.get("/metrics/", headers=ADMIN)).text
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


async def test_blocked_and_declined_orders_release_their_stock_every_time(
    fresh: Ecosystem,
) -> None:
    sku = "milk-jug-350ml"
    url = fresh.start_gateway("gateway")
    before = stock(fresh, sku)
    orders = [
        order(i, sku=sku, customer_id=f"fraud-{i}")
        if i % 2
        else order(i, sku=sku, card_token="tok-0000")
        for i in range(50)
    ]
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        locations = [await submit(client, "order-to-delivery", o) for o in orders]
        runs = await wait_all(client, locations, 180, settled=True)
    codes = sorted({r["error"]["code"] for r in runs.values()})
    assert codes == ["card_declined", "high_risk"]
    assert all(r["status"] == "failed" and r["compensated"] for r in runs.values())
    assert stock(fresh, sku) == before, "every reservation of a failed order is released"


async def test_units_restarted_mid_run_keep_charges_andstock(fresh: Ecosystem) -> None:
    sku = "grinder-c40"
    url = fresh.start_gateway("gateway")
    before = stock(fresh, sku)
    bought = run_journey(url, order(1, sku=sku)).json()
    assert bought["status"] == "completed", bought
    reservation = steps_of(bought)["reserve"]["output"]["reservation_id"]
    assert fresh.group is not None
    for unit, topic in (("payments", "payments.refund.v2"), ("inventory", "inventory.release.v1")):
        fresh.group.kill(fresh.process(unit))
        fresh.start_units(unit)
        fresh.wait_serving(unit, [topic])
    assert stock(fresh, sku) == before - 1
    back = {
        "charge_id": bought["output"]["charge_id"],
        "reservation_id": reservation,
        "customer_id": "cust-1",
        "order_id": bought["input"]["order_id"],
    }
    returned = run_journey(url, back, "return-and-refund").json()
    assert returned["status"] == "completed", returned
    assert stock(fresh, sku) == before
    again = run_journey(url, back, "return-and-refund").json()
    assert again["status"] == "completed", "undoing twice answers ok: undo is idempotent"
    assert again["output"]["refund_id"] == returned["output"]["refund_id"]
    assert stock(fresh, sku) == before, "released once"


async def test_payments_stopped_mid_stream_charge_each_order_at_most_once(
    fresh: Ecosystem,
) -> None:
    """SIGSTOP payments for longer than `pay` waits: attempts time out, charges happen late.
    Each completed order keeps exactly the charge it reports; every other charge is refunded."""
    url = fresh.start_gateway("gateway")
    payments = fresh.process("payments").popen.pid
    orders = [order(i) for i in range(40)]
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        locations = [await submit(client, "order-to-delivery", o) for o in orders[:20]]
        os.kill(payments, signal.SIGSTOP)
        try:
            locations += [await submit(client, "order-to-delivery", o) for o in orders[20:]]
            await asyncio.sleep(7)  # pay waits 5 s per attempt
        finally:
            os.kill(payments, signal.SIGCONT)
        runs = await wait_all(client, locations, 240, settled=True)
    charges, refunded = payments_ledger(fresh)
    outcomes = defaultdict(int)
    for run in runs.values():
        outcomes[run["status"]] += 1
        charged = charges.get(run["input"]["order_id"], [])
        kept = [c for c in charged if c not in refunded]
        if run["status"] == "completed":
            assert kept == [run["output"]["charge_id"]], run
        else:
            assert run["status"] in ("failed", "timed_out"), run
            assert kept == [], f"{run['input']['order_id']} keeps {kept} after {run['status']}"
    assert outcomes["completed"] >= 20, dict(outcomes)
