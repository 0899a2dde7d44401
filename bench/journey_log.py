"""Every run's newest record in a journey log topic, read from the beginning to the end the
topic has when the read starts: what the gateways last wrote for each run.

Records are kept as plain JSON, not parsed into the gateway's models: a checker must see what
was written, and a record the gateway's models would refuse is worth reporting, not hiding."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from mbs.kafka import Connection

READ_TIMEOUT_S = 120.0


@dataclass
class JourneyLog:
    """The newest record of each run (by run id), and the records that were not runs."""

    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)  # "partition@offset: why"
    # a run's state written after a newer (or as new) one: two writers at once
    regressions: list[str] = field(default_factory=list)
    newest: dict[str, tuple[int, str]] = field(default_factory=dict)  # run -> (revision, where)

    def add(self, key: str, value: bytes | None, where: str) -> None:
        """Take the next record of the log (in offset order within its partition)."""
        if value is None:  # a tombstone: the run was deleted, and must have finished first
            ended = self.runs.get(key)
            if ended is not None and (ended.get("status") == "running" or ended.get("unsettled")):
                self.regressions.append(f"run {key}: deleted at {where} while not finished")
            return  # its last state stands for what it did
        try:
            run = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.unreadable.append(f"{where}: not JSON ({exc})")
            return
        if not isinstance(run, dict) or run.get("run_id") != key:
            self.unreadable.append(f"{where}: not a run filed under its run id {key!r}")
            return
        revision = int(run.get("revision") or 0)
        before = self.newest.get(key)
        if before is not None and revision <= before[0]:
            self.regressions.append(
                f"run {key}: revision {revision} ({run.get('status')}) written at {where}, "
                f"after revision {before[0]} at {before[1]}"
            )
        if before is None or revision > before[0]:
            self.newest[key] = (revision, where)
        self.runs[key] = run


async def read_journey_log(bootstrap: str, topic: str) -> JourneyLog:
    """The topic's newest record per key. A key always lands on one partition, so the last
    record of a key in its partition is the run's newest state (what compaction keeps)."""
    options = Connection(bootstrap).options()
    parts = [TopicPartition(topic, p) for p in await _partitions(options, topic)]
    consumer = AIOKafkaConsumer(  # committed states only: what the engine acted on
        **options,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        # explicit offsets: seek_to_beginning() can lose to the reset `assign` started
        for tp, first in (await consumer.beginning_offsets(parts)).items():
            consumer.seek(tp, first)
        return await asyncio.wait_for(_read_until(consumer, ends), READ_TIMEOUT_S)
    finally:
        await consumer.stop()


async def _partitions(options: dict[str, Any], topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described.get("error_code") or not described.get("partitions"):
        raise LookupError(f"no topic {topic!r}: check --journeys-topic and --bootstrap")
    return sorted(int(p["partition"]) for p in described["partitions"])


async def _read_until(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> JourneyLog:
    log = JourneyLog()
    open_parts = {tp for tp, end in ends.items() if end > 0}
    while open_parts:
        for tp in list(open_parts):
            if await consumer.position(tp) >= ends[tp]:
                open_parts.discard(tp)
        if not open_parts:
            break
        batches = await consumer.getmany(*open_parts, timeout_ms=500)
        for tp, records in batches.items():
            for record in records:
                if record.offset < ends[tp]:
                    key = record.key.decode(errors="replace") if record.key else ""
                    log.add(key, record.value, f"{tp.partition}@{record.offset}")
    return log
