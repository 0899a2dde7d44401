"""The unit kit in memory (FastStream's TestKafkaBroker): fast feedback, same cases as on Kafka."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from tests import unit_kit_cases as cases


@pytest.fixture
async def harness(uid: str) -> AsyncIterator[cases.Harness]:
    broker = KafkaBroker()
    built = cases.build_harness(broker, uid)
    async with TestKafkaBroker(broker):
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
async def test_failures_and_redelivery(uid: str, failures: int, case: Any) -> None:
    broker = KafkaBroker()
    flaky = cases.Flaky(failures)
    harness = cases.build_harness_with(broker, uid, flaky.quote)
    async with TestKafkaBroker(broker):
        await case(harness, flaky)


async def test_shadow_without_dry_run(harness: cases.Harness) -> None:
    await cases.case_shadow_request_is_refused_without_dry_run(harness)


async def test_business_error_is_remembered(uid: str) -> None:
    broker = KafkaBroker()
    moody = cases.Moody()
    harness = cases.build_harness_with(broker, uid, moody.quote)
    async with TestKafkaBroker(broker):
        await cases.case_business_error_is_remembered(harness, moody)


async def test_reply_lost_after_commit_is_sent_again_not_redone(uid: str) -> None:
    broker = cases.ReplyLosingBroker()
    flaky = cases.Flaky(0)
    harness = cases.build_harness_with(broker, uid, flaky.quote)
    broker.lose_on = harness.contract.reply_topic
    async with TestKafkaBroker(broker):
        await cases.case_reply_lost_after_commit_is_sent_again_not_redone(
            harness, flaky, redeliver=True
        )
