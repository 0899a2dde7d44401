"""Finished runs are deleted when due, never a parked or unfinished one, and never by a
gateway that gave their partition up."""

from __future__ import annotations

import asyncio

from gateway.fencing import NotOwner
from gateway.models import JourneyRun
from gateway.retention import Retention


def run(
    run_id: str, status: str = "completed", ended_ms: int = 10_000, **more: object
) -> JourneyRun:
    return JourneyRun(
        run_id=run_id,
        journey="order-to-delivery",
        version=1,
        status=status,  # type: ignore[arg-type]
        input={},
        steps=[],
        created_ms=ended_ms - 500,
        deadline_ms=ended_ms + 60_000,
        latency_ms=500.0,
        **more,  # type: ignore[arg-type]
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.02)


async def test_a_finished_run_is_deleted_once_older_than_the_retention() -> None:
    deleted: list[str] = []

    async def delete(run_id: str) -> None:
        deleted.append(run_id)

    clock = Clock()
    retention = Retention(delete, keep_s=60, keep_runs=100, clock=clock)
    retention.start()
    try:
        retention.finished(run("old", ended_ms=10_000), partition=0)
        retention.finished(run("young", ended_ms=50_000), partition=0)
        retention.finished(run("parked", "compensation_failed", unsettled=["m1"]), partition=0)
        retention.finished(run("running", "running", ended_ms=0), partition=0)
        clock.now = 69.0
        retention.finished(run("nudge", ended_ms=60_000), partition=0)
        await settle()
        assert deleted == [], "deleted before its time"
        clock.now = 70.5
        await asyncio.sleep(1.2)  # the schedule looks again at least every second
        assert deleted == ["old"]
        clock.now = 111.0
        await asyncio.sleep(1.2)
        assert deleted == ["old", "young"]
    finally:
        await retention.stop()


async def test_more_finished_runs_than_kept_are_deleted_oldest_first() -> None:
    deleted: list[str] = []

    async def delete(run_id: str) -> None:
        deleted.append(run_id)

    retention = Retention(delete, keep_s=3600, keep_runs=3, clock=Clock())
    retention.start()
    try:
        for i in range(5):
            retention.finished(run(f"r{i}", ended_ms=10_000 + i), partition=i % 2)
        await settle()
        assert deleted == ["r0", "r1"]
    finally:
        await retention.stop()


async def test_runs_of_a_partition_given_up_are_left_to_its_next_owner() -> None:
    deleted: list[str] = []

    async def delete(run_id: str) -> None:
        if run_id == "fenced":
            raise NotOwner("journey-log partition 2: fenced")
        deleted.append(run_id)

    clock = Clock()
    retention = Retention(delete, keep_s=1, keep_runs=100, clock=clock)
    retention.start()
    try:
        retention.finished(run("mine", ended_ms=1_000), partition=0)
        retention.finished(run("theirs", ended_ms=1_000), partition=1)
        retention.finished(run("fenced", ended_ms=1_000), partition=2)
        retention.forget({1})
        clock.now = 10.0
        await asyncio.sleep(1.2)
        assert deleted == ["mine"]
        assert retention.deleted == 1
    finally:
        await retention.stop()
