"""Card tokens end to end: the real journey log never holds one in clear, and no HTTP response
carrying a run shows it; the payments unit still charged with it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.models import REDACTED
from gateway.runlog import STATE_PARTITIONS
from gateway.secrets import SEALED
from tests.e2e.ecosystem import CALLER, UNITS, Ecosystem, order, run_journey, submit, wait_all

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def eco(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecosystem]:
    ecosystem = Ecosystem(kafka_bootstrap, tmp_path_factory.mktemp("eco-secrets"))
    try:
        ecosystem.start_units(*UNITS)
        ecosystem.start_gateway()
        yield ecosystem
    finally:
        ecosystem.stop()


async def _journey_log(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    """Every record of the journey log, raw, from the beginning of every partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(STATE_PARTITIONS)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        records: list[tuple[bytes, bytes]] = []
        for _ in range(120):  # a minute at most
            read = {tp: await consumer.position(tp) for tp in parts}
            if all(read[tp] >= end for tp, end in ends.items()):
                break
            batches = await consumer.getmany(timeout_ms=500)
            records += [(r.key, r.value) for rs in batches.values() for r in rs if r.value]
        return records
    finally:
        await consumer.stop()


def test_card_tokens_are_never_in_the_journey_log_nor_shown(eco: Ecosystem) -> None:
    url = eco.gateways["gateway"]
    paid, declined = f"tok-{uuid.uuid4().hex}-4242", f"tok-{uuid.uuid4().hex}-0000"
    done = run_journey(url, order(1, card_token=paid))
    assert done.status_code == 200, done.text
    refused = run_journey(url, order(2, card_token=declined))
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "card_declined", "the unit saw the real token"

    async def submitted() -> dict[str, str]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            location = await submit(client, "order-to-delivery", order(3, card_token=paid))
            first = await client.get(location, headers=CALLER)  # likely still running
            final = await wait_all(client, [location], timeout_s=60, settled=True)
            return {"early": first.text, "final": str(final[location])}

    polled = asyncio.run(submitted())
    runs = [done.json(), refused.json()]
    for run in runs:
        assert run["input"]["card_token"] == REDACTED
        assert run["secrets"] == ["card_token"]
    responses = [done.text, refused.text, *polled.values()]
    for run in runs:
        got = httpx.get(f"{url}/journeys/order-to-delivery/runs/{run['run_id']}", headers=CALLER)
        assert got.status_code == 200
        assert got.json()["input"]["card_token"] == REDACTED
        responses.append(got.text)
    for text in responses:
        assert paid not in text
        assert declined not in text

    topic = eco.topics["MBS_JOURNEYS_TOPIC"]
    records = asyncio.run(_journey_log(eco.bootstrap, topic))
    mine = {run["run_id"].encode() for run in runs}
    assert mine <= {key for key, _ in records}, "the runs are in the log"
    assert any(SEALED.encode() in value for _, value in records), "kept sealed while running"
    for key, value in records:
        assert paid.encode() not in value, f"run {key!r}: card token in clear in {topic}"
        assert declined.encode() not in value, f"run {key!r}: card token in clear in {topic}"
    last = dict(records)
    for run_id in mine:
        assert SEALED.encode() not in last[run_id], "a finished run keeps no ciphertext"
