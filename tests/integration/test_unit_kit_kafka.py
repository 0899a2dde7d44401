"""The unit kit on the real broker: the same cases as in memory, for truth."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from faststream.kafka import KafkaBroker

from mbs import wire as h
from mbs.kafka import Connection, ensure_topics
from tests import unit_kit_cases as cases

pytestmark = pytest.mark.kafka


@pytest.fixture
async def harness(kafka_bootstrap: str, uid: str) -> AsyncIterator[cases.Harness]:
    broker = KafkaBroker(kafka_bootstrap, max_request_size=2_000_000)
    built = cases.build_harness(broker, uid)
    contract = built.contract
    await ensure_topics(
        Connection(kafka_bootstrap),
        [contract.request_topic, contract.reply_topic, contract.dlq_topic],
        config={"max.message.bytes": "2000000"},
    )
    async with broker:
        await broker.start()
        yield built


async def test_valid_request(harness: cases.Harness) -> None:
    await cases.case_valid_request_gets_priced_reply(harness)


@pytest.mark.parametrize(("body", "headers", "reason", "detail"), cases.BAD_INPUTS)
async def test_bad_input(
    harness: cases.Harness, body: bytes, headers: dict[str, str], reason: str, detail: str
) -> None:
    await cases.case_bad_input_is_dead_lettered_and_unit_keeps_serving(
        harness, body, headers, reason, detail
    )


async def test_the_reply_goes_to_the_partition_the_request_names(harness: cases.Harness) -> None:
    """Each gateway instance reads only its own reply partitions; the key (the journey) would
    put every reply of this journey on one partition."""
    for partition in (2, 0, 1, 2):
        asked = {h.JOURNEY_ID: "j-routed", h.REPLY_PARTITION: str(partition)}
        correlation = await harness.send(cases.valid(), **asked)
        _, hdrs = await harness.reply()
        assert hdrs[h.CORRELATION_ID] == correlation
        assert harness.reply_partitions[-1] == partition


async def test_a_partition_the_reply_topic_lacks_is_answered_by_key(
    harness: cases.Harness,
) -> None:
    correlation = await harness.send(cases.valid(), **{h.REPLY_PARTITION: "7"})
    _, hdrs = await harness.reply()
    assert (hdrs[h.CORRELATION_ID], h.ERROR in hdrs) == (correlation, False)
    assert harness.reply_partitions[-1] in (0, 1, 2)


async def test_business_error(harness: cases.Harness) -> None:
    await cases.case_business_error_is_a_typed_reply(harness)


async def test_expired_deadline(harness: cases.Harness) -> None:
    await cases.case_expired_deadline_is_not_processed(harness)


@pytest.mark.parametrize(
    ("failures", "case"),
    [
        (2, cases.case_transient_failure_is_retried),
        (99, cases.case_persistent_failure_goes_to_dlq),
        (0, cases.case_redelivery_gets_the_same_reply),
        (0, cases.case_passed_deadline_is_the_final_answer),
        (3, cases.case_technical_failure_is_not_remembered),
    ],
)
async def test_failures_and_redelivery(
    kafka_bootstrap: str, uid: str, failures: int, case: Any
) -> None:
    broker = KafkaBroker(kafka_bootstrap)
    flaky = cases.Flaky(failures)
    harness = cases.build_harness_with(broker, uid, flaky.quote)
    contract = harness.contract
    await ensure_topics(
        Connection(kafka_bootstrap),
        [contract.request_topic, contract.reply_topic, contract.dlq_topic],
    )
    async with broker:
        await broker.start()
        await case(harness, flaky)


async def test_shadow_without_dry_run(harness: cases.Harness) -> None:
    await cases.case_shadow_request_is_refused_without_dry_run(harness)


async def test_business_error_is_remembered(kafka_bootstrap: str, uid: str) -> None:
    broker = KafkaBroker(kafka_bootstrap)
    moody = cases.Moody()
    harness = cases.build_harness_with(broker, uid, moody.quote)
    await ensure_topics(Connection(kafka_bootstrap), harness.unit.topics)
    async with broker:
        await broker.start()
        await cases.case_business_error_is_remembered(harness, moody)


async def test_reply_lost_after_commit_is_redelivered_and_sent_again_not_redone(
    kafka_bootstrap: str, uid: str
) -> None:
    """Here Kafka itself redelivers the request the unit did not acknowledge."""
    broker = cases.ReplyLosingBroker(kafka_bootstrap)
    flaky = cases.Flaky(0)
    harness = cases.build_harness_with(broker, uid, flaky.quote)
    broker.lose_on = harness.contract.reply_topic
    await ensure_topics(Connection(kafka_bootstrap), harness.unit.topics)
    async with broker:
        await broker.start()
        await cases.case_reply_lost_after_commit_is_sent_again_not_redone(
            harness, flaky, redeliver=False
        )
