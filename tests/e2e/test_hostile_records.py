"""A journey log with a bad record in every partition: the restarted gateway quarantines
them and resumes every unfinished run; no card is charged without its order completing or
the charge being refunded."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections import defaultdict

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from gateway.runlog import STATE_PARTITIONS
from tests.e2e.ecosystem import (
    CALLER,
    TERMINAL,
    Ecosystem,
    order,
    payments_ledger,
    submit,
    wait_all,
)
from tests.integration.test_hostile_records import produce_undecodable, quarantined

pytestmark = pytest.mark.kafka


async def unfinished(client: httpx.AsyncClient, locations: list[str]) -> list[str]:
    """The run ids whose outcome or accounting is still open."""
    open_runs = []
    for location in locations:
        run = (await client.get(location, headers=CALLER)).json()
        if run.get("status") not in TERMINAL or run.get("unsettled"):
            open_runs.append(location.rsplit("/", 1)[-1])
    return open_runs


async def at_step(
    client: httpx.AsyncClient, locations: list[str], step: str, at_least: int
) -> None:
    """Until `at_least` of the runs have called `step` (their call saved, maybe unanswered)."""
    deadline = time.monotonic() + 30
    while True:
        there = 0
        for location in locations:
            run = (await client.get(location, headers=CALLER)).json()
            there += any(s["id"] == step and s.get("calls") for s in run.get("steps", []))
        if there >= at_least:
            return
        assert time.monotonic() < deadline, f"only {there} runs reached {step!r} in 30 s"
        await asyncio.sleep(0.2)


async def spoil(bootstrap: str, topic: str, run_ids: list[str]) -> None:
    """One bad record in every partition of the journey log, each of another kind, plus
    garbage filed under unfinished runs (their newest record, which must hide nothing)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        kinds: list[tuple[bytes, bytes]] = [
            (b"garbage-0", os.urandom(300)),
            (b"garbage-1", b"[1,2,3]"),
            (b"\xff\xfe-garbage-2", b'{"run_id": "x"}'),
            (b"garbage-3", b'{"run_id":"garbage-3","revision":7}'),  # looks saved, is not
            (b"garbage-4", b'{"' + b"x" * 900_000 + b'": 1}'),
        ]
        for partition, (key, value) in enumerate(kinds):
            await producer.send_and_wait(topic, value, key=key, partition=partition)
        for partition in range(len(kinds), STATE_PARTITIONS):
            await produce_undecodable(producer, topic, partition=partition, key=b"garbage-5")
        for run_id in run_ids:
            await producer.send_and_wait(topic, b"\x00not a run", key=run_id.encode())
    finally:
        await producer.stop()


@pytest.mark.timeout(420)
async def test_bad_records_in_every_partition_do_not_stop_a_resume(
    fresh: Ecosystem, kafka_bootstrap: str
) -> None:
    assert fresh.group is not None
    journeys = fresh.topics["MBS_JOURNEYS_TOPIC"]
    url = fresh.start_gateway("gateway")
    payments = fresh.process("payments").popen.pid
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        locations = [await submit(client, "order-to-delivery", order(i)) for i in range(20)]
        os.kill(payments, signal.SIGSTOP)  # the next runs stop at `pay`, unfinished
        try:
            locations += [
                await submit(client, "order-to-delivery", order(i)) for i in range(20, 40)
            ]
            await at_step(client, locations[20:], "pay", at_least=10)
            stuck = await unfinished(client, locations)
            fresh.group.kill(fresh.process("gateway"))
            await spoil(kafka_bootstrap, journeys, stuck)
        finally:
            os.kill(payments, signal.SIGCONT)
        assert len(stuck) >= 10, f"only {len(stuck)} runs were unfinished at the kill"
        client.base_url = httpx.URL(fresh.start_gateway("gateway-restarted"))
        runs = await wait_all(client, locations, 300, settled=True)
    charges, refunded = payments_ledger(fresh)
    outcomes: dict[str, int] = defaultdict(int)
    for run in runs.values():
        outcomes[run["status"]] += 1
        kept = [c for c in charges.get(run["input"]["order_id"], []) if c not in refunded]
        if run["status"] == "completed":
            assert kept == [run["output"]["charge_id"]], run
        else:
            assert run["status"] in ("failed", "timed_out"), run
            assert kept == [], f"{run['input']['order_id']} keeps {kept} after {run['status']}"
    assert outcomes["completed"] >= 20, dict(outcomes)
    log = fresh.process("gateway-restarted").log_file.read_text(errors="replace")
    resumed = set(re.findall(r"resuming run (\S+)", log))
    assert set(stuck) <= resumed, f"not resumed: {set(stuck) - resumed}"
    found = await quarantined(kafka_bootstrap, journeys, STATE_PARTITIONS + len(stuck))
    partitions = {headers["mbs-source-partition"] for _, headers in found.values()}
    assert partitions == {str(p).encode() for p in range(STATE_PARTITIONS)}
    reasons = {headers["mbs-error"] for _, headers in found.values()}
    assert reasons == {b"not_json", b"schema_invalid", b"unreadable"}
