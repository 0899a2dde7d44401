"""Runs the journeys of the state partitions this gateway owns, resuming unfinished ones.

While a partition is replayed, each run's newest record is kept; a record that is not a run
is quarantined and never replaces the state before it, and one bad record never stops the
others from resuming. A replay is over when the reader's position reaches the end the
partition had when it was assigned (its last offsets may hold no record, only transaction
markers). A run whose state could not be saved stops, and is taken up again from where its
last saved state left it: by its partition's new owner if this gateway lost it, else here
after a pause."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from gateway.definition import JourneyDefinition
from gateway.engine import JourneyEngine
from gateway.fencing import NotOwner, NotSaved
from gateway.models import JourneyRun
from gateway.retention import Retention
from gateway.runcache import revision
from gateway.runlog import RunLog, looks_saved
from mbs.backoff import Backoff

log = logging.getLogger("mbs.gateway.executor")
REMEMBERED = 100_000
RETRY_SAVE = Backoff(first_s=0.5, max_s=10.0)
UNKNOWN_END = 2**63  # a partition's replay end until it is fenced and read

Definitions = dict[tuple[str, int], JourneyDefinition]


class Executor:
    """One owner per run: the gateway instance that owns the run's state partition."""

    def __init__(
        self,
        engine: JourneyEngine,
        runlog: RunLog,
        definitions: Definitions,
        retention: Retention | None = None,
    ) -> None:
        self.engine = engine
        self.runlog = runlog
        self.definitions = definitions
        self.retention = retention
        self.active: dict[str, tuple[asyncio.Task[None], int]] = {}
        self.finished: OrderedDict[str, int] = OrderedDict()  # run id -> final revision
        self.replay_end: dict[int, int] = {}
        # while replaying: each run's newest record (raw, parsed when the replay ends) and offset
        self.pending: dict[int, dict[str, tuple[bytes | JourneyRun, int]]] = {}
        self.resumed = 0
        self.joined = False  # the group gave this instance its partitions (maybe none)

    def replaying(self) -> list[int]:
        """Owned partitions whose start-up replay has not reached its end yet."""
        return sorted(p for p in self.pending if self.replay_end.get(p, 0) > 0)

    @property
    def caught_up(self) -> bool:
        """Joined the group and replayed every owned partition (unfinished runs resumed)."""
        return self.joined and not self.replaying()

    def assigning(self, partitions: set[int]) -> None:
        """Records of these may come before their end is known: all are held (the end
        `on_assigned` gives is only known once the partition is fenced)."""
        for partition in partitions:
            self.replay_end[partition] = UNKNOWN_END
            self.pending[partition] = {}

    async def on_assigned(self, ends: dict[int, int]) -> None:
        self.joined = True
        for partition, end in ends.items():
            self.replay_end[partition] = end
            self.pending.setdefault(partition, {})

    async def on_revoked(self, partitions: set[int]) -> None:
        """Another instance owns these now: stop working on their runs (it resumes them).
        The rebalance waits for this: each run is stopped, steps included, and every state
        it wrote is in the log before the next owner reads the log's end, so no run is
        executed twice and no older state lands after the next owner's."""
        if self.retention is not None:
            self.retention.forget(partitions)
        stopping = []
        for run_id, (task, partition) in list(self.active.items()):
            if partition in partitions:
                task.cancel()
                stopping.append(task)
                self.active.pop(run_id, None)
        await asyncio.gather(*stopping, return_exceptions=True)
        await self.runlog.flush()
        for partition in partitions:
            self.replay_end.pop(partition, None)
            self.pending.pop(partition, None)

    async def on_record(
        self, run_id: str, value: bytes | None, partition: int, offset: int
    ) -> None:
        """Every record of an owned partition (value None: nothing to act on, but the replay
        moves on): buffered while replaying, else acted on."""
        if partition in self.pending:
            if offset < self.replay_end.get(partition, 0):
                if value is not None:
                    self._buffer(run_id, value, partition, offset)
                return
            self._resume(partition)  # a record past the end: the replay is over
        if value is None or run_id in self.active:
            return  # nothing to act on, or our own writes read back
        if run_id in self.finished and b'"unsettled":[]' in value:
            return  # our own final write, read back; an operator's reopening is acted on
        run = self.runlog.read(run_id, value, partition, offset)
        if run is not None:
            self._consider(run, partition, resumed=False)

    async def on_position(self, partition: int, position: int) -> None:
        """The reader got this far in an owned partition: at its end, the replay is over."""
        if partition in self.pending and position >= self.replay_end.get(partition, 0):
            self._resume(partition)

    def _buffer(self, run_id: str, value: bytes, partition: int, offset: int) -> None:
        """Keep a run's newest record; one that does not look like a saved run is read now,
        so that if it is not one it is quarantined and the state before it stays."""
        kept: bytes | JourneyRun = value
        if not looks_saved(run_id, value):
            run = self.runlog.read(run_id, value, partition, offset)
            if run is None:
                return
            kept = run
        buffered = self.pending.setdefault(partition, {})
        earlier = buffered.get(run_id)
        if earlier is not None and offset <= earlier[1]:
            return  # read again: the fetcher may start before the replay's seek
        if earlier is not None and _revision_of(earlier[0]) > _revision_of(kept):
            log.warning(
                "run %s: an older state at %d after a newer one; kept the newer", run_id, offset
            )
            return
        buffered[run_id] = (kept, offset)

    def _resume(self, partition: int) -> None:
        """The replay of `partition` is over: act on each run's newest state, each on its own."""
        for run_id, (kept, offset) in self.pending.pop(partition, {}).items():
            run = (
                self.runlog.read(run_id, kept, partition, offset)
                if isinstance(kept, bytes)
                else kept
            )
            if run is None:
                log.error("run %s: its newest state is unreadable; not resumed", run_id)
                continue
            self._consider(run, partition, resumed=True)

    def take(self, run: JourneyRun, partition: int) -> bool:
        """Start a run this gateway just accepted, if it owns the run's partition (no hop)."""
        if partition not in self.replay_end or partition in self.pending:
            return False  # not ours, or its replay not over: it is found there
        self._consider(run, partition, resumed=False, fresh=True)
        return run.run_id in self.active

    def _consider(
        self, run: JourneyRun, partition: int, *, resumed: bool, fresh: bool = False
    ) -> None:
        """Execute the run unless it is finished or already running here. Only a run this
        gateway just made is `fresh`; one read from the log may have been started by the
        gateway that accepted it, or by an earlier owner (see gateway.recovery)."""
        if run.run_id in self.active:
            return
        if run.finished or run.revision <= self.finished.get(run.run_id, -1):
            self._remember(run.run_id, run.revision if run.finished else -1)
            if run.finished and self.retention is not None:
                self.retention.finished(run, partition)
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
        task = asyncio.create_task(self._execute(definition, run, partition, fresh))
        self.active[run.run_id] = (task, partition)

    async def _execute(
        self, definition: JourneyDefinition, run: JourneyRun, partition: int, fresh: bool
    ) -> None:
        try:
            failures = 0
            while not await self._run_once(definition, run, partition, fresh):
                failures += 1
                await asyncio.sleep(RETRY_SAVE.delay(failures))
                if partition not in self.replay_end:
                    return  # lost meanwhile: the new owner takes it up
        finally:
            self.active.pop(run.run_id, None)

    async def _run_once(
        self, definition: JourneyDefinition, run: JourneyRun, partition: int, fresh: bool
    ) -> bool:
        """True once the run needs nothing more from this gateway."""
        try:
            await self.engine.run(definition, run, fresh=fresh)
        except NotOwner as exc:  # fenced, or the partition went: its owner takes it up
            log.warning("run %s stops here: %s", run.run_id, exc)
            return True
        except NotSaved as exc:
            # The engine saves before it acts, so nothing unsaved was sent; taken up again
            # from its state in memory, the run settles what its last save had under way.
            log.warning("run %s: a state was not saved (%s); taking it up again", run.run_id, exc)
            return False
        self._remember(run.run_id, run.revision)
        self.runlog.finished_here(run)
        if self.retention is not None:
            self.retention.finished(run, partition)
        return True

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


def _revision_of(kept: bytes | JourneyRun) -> int:
    return kept.revision if isinstance(kept, JourneyRun) else revision(kept)
