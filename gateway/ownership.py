"""How the journey log's partitions change hands: the executor's side (`PartitionOwner`) and
the group's rebalance listener (`Replay`), which fences a partition before reading its end."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from aiokafka import ConsumerRebalanceListener, TopicPartition

from mbs.kafka import RecordReader

if TYPE_CHECKING:
    from gateway.runlog import RunLog

log = logging.getLogger("mbs.gateway.runlog")


class PartitionOwner(Protocol):
    """What the executor does with the partitions the group gives this gateway."""

    def assigning(self, partitions: set[int]) -> None:
        """Given, not yet replayable: hold every record of them until `on_assigned`."""

    async def on_assigned(self, ends: dict[int, int]) -> None:
        """Fenced, and each partition's end known: replay up to it, then resume."""

    async def on_revoked(self, partitions: set[int]) -> None:
        """Taken away: stop their runs before their next owner reads them."""

    async def on_record(
        self, run_id: str, value: bytes | None, partition: int, offset: int
    ) -> None:
        """Every committed record of an owned partition, in order."""

    async def on_position(self, partition: int, position: int) -> None:
        """How far the reader got in an owned partition."""


class Replay(ConsumerRebalanceListener):  # type: ignore[misc]
    """Reads assigned partitions from their beginning, so unfinished runs are found again."""

    def __init__(
        self,
        reader: RecordReader,
        runlog: RunLog,
        owner: PartitionOwner,
    ) -> None:
        self.reader = reader
        self.consumer = reader.consumer
        self.runlog = runlog
        self.owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.runlog.rebalances += 1
        self.reader.forget(revoked)
        partitions = {tp.partition for tp in revoked}
        await self.owner.on_revoked(partitions)  # its runs stopped, so nothing more is queued
        await self.runlog.release(partitions)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.runlog.rebalances += 1
        # the fetcher may hand out their records during the awaits below: they are held
        self.owner.assigning({tp.partition for tp in assigned})
        if not assigned:  # more instances than partitions: nothing to replay, still joined
            await self.owner.on_assigned({})
            return
        # fenced first: the end read next is then final for every earlier writer
        await self.runlog.fence({tp.partition for tp in assigned})
        for tp, offset in (await self.consumer.beginning_offsets(list(assigned))).items():
            self.reader.seek(tp, offset)
        ends = await self.consumer.end_offsets(list(assigned))
        await self.owner.on_assigned({tp.partition: end for tp, end in ends.items()})
        self.runlog.rebalances += 1  # and any position read while these seeks were made
        log.info("executing journeys of partitions %s", sorted(tp.partition for tp in assigned))
