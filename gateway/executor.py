"""Runs the journeys of the state partitions this gateway owns, resuming unfinished ones."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from gateway.definition import JourneyDefinition
from gateway.engine import JourneyEngine
from gateway.models import JourneyRun
from gateway.runlog import RunLog

log = logging.getLogger("mbs.gateway.executor")
REMEMBERED = 100_000

Definitions = dict[tuple[str, int], JourneyDefinition]


class Executor:
    """One owner per run: the gateway instance that owns the run's state partition."""

    def __init__(self, engine: JourneyEngine, runlog: RunLog, definitions: Definitions) -> None:
        self.engine = engine
        self.runlog = runlog
        self.definitions = definitions
        self.active: dict[str, tuple[asyncio.Task[None], int]] = {}
        self.finished: OrderedDict[str, int] = OrderedDict()  # run id -> final revision
        self.replay_end: dict[int, int] = {}
        self.pending: dict[int, dict[str, bytes]] = {}
        self.resumed = 0

    async def on_assigned(self, ends: dict[int, int]) -> None:
        for partition, end in ends.items():
            self.replay_end[partition] = end
            self.pending[partition] = {}

    async def on_revoked(self, partitions: set[int]) -> None:
        """Another instance owns these now: stop working on their runs (it resumes them)."""
        for run_id, (task, partition) in list(self.active.items()):
            if partition in partitions:
                task.cancel()
                self.active.pop(run_id, None)
        for partition in partitions:
            self.replay_end.pop(partition, None)
            self.pending.pop(partition, None)

    async def on_record(self, run_id: str, value: bytes, partition: int, offset: int) -> None:
        """Every record of an owned partition: buffered while replaying, else acted on."""
        if offset + 1 < self.replay_end.get(partition, 0):
            self.pending.setdefault(partition, {})[run_id] = value
            return
        for earlier_id, earlier in self.pending.pop(partition, {}).items():
            if earlier_id != run_id:
                self._consider(JourneyRun.model_validate_json(earlier), partition, resumed=True)
        if run_id in self.active:
            return  # our own writes, read back
        if run_id in self.finished and b'"unsettled":[]' in value:
            return  # our own final write, read back; an operator's reopening is acted on
        resumed = offset + 1 == self.replay_end.get(partition)
        self._consider(JourneyRun.model_validate_json(value), partition, resumed=resumed)

    def take(self, run: JourneyRun, partition: int) -> bool:
        """Start a run this gateway just accepted, if it owns the run's partition (no hop)."""
        if partition not in self.replay_end or self.pending.get(partition):
            return False
        self._consider(run, partition, resumed=False)
        return run.run_id in self.active

    def _consider(self, run: JourneyRun, partition: int, *, resumed: bool) -> None:
        if run.run_id in self.active:
            return
        if run.finished or run.revision <= self.finished.get(run.run_id, -1):
            self._remember(run.run_id, run.revision if run.finished else -1)
            return
        definition = self.definitions.get((run.journey, run.version))
        if definition is None:
            log.error(
                "run %s needs %s@%d, which this gateway does not know",
                run.run_id,
                run.journey,
                run.version,
            )
            return
        if resumed or run.revision > 1:
            self.resumed += 1
            log.info("resuming run %s of %s at revision %d", run.run_id, run.journey, run.revision)
        task = asyncio.create_task(self._execute(definition, run))
        self.active[run.run_id] = (task, partition)

    async def _execute(self, definition: JourneyDefinition, run: JourneyRun) -> None:
        try:
            await self.engine.run(definition, run)
            self._remember(run.run_id, run.revision)
            self.runlog.finished_here(run)
        finally:
            self.active.pop(run.run_id, None)

    def _remember(self, run_id: str, revision: int) -> None:
        if revision < 0:
            return
        self.finished[run_id] = revision
        self.finished.move_to_end(run_id)
        while len(self.finished) > REMEMBERED:
            self.finished.popitem(last=False)

    async def stop(self) -> None:
        tasks = [task for task, _ in self.active.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
