"""How finished runs leave the journey log: their partition's owner deletes them (a tombstone)
once they are older than `MBS_JOURNEY_RETENTION_S`, or sooner when it holds more than
`MBS_JOURNEY_RETAINED_RUNS` finished runs; Kafka's log cleaner then drops their records.

The log is compacted, so a run's earlier states go once a newer one is written; without
deletion its final state would stay forever (38,143 records / 128 MB after 5,000 journeys).
A parked run (`compensation_failed`) is never deleted: it waits for an operator. The
schedule is kept in memory in finish order and rebuilt by every replay (each finished run is
read again with the time it ended), so it survives restarts and rebalances."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from gateway.fencing import NotSaved
from gateway.models import JourneyRun

log = logging.getLogger("mbs.gateway.retention")
Delete = Callable[[str], Awaitable[None]]
IDLE_S = 1.0


def ended_s(run: JourneyRun) -> float:
    """When a finished run ended (epoch seconds), from what its state says."""
    ended_ms = run.created_ms + run.latency_ms if run.latency_ms is not None else run.deadline_ms
    return ended_ms / 1000


class Retention:
    """Deletes this gateway's finished runs when they are due, while it owns their partition."""

    def __init__(
        self,
        delete: Delete,
        keep_s: float,
        keep_runs: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.delete, self.keep_s, self.keep_runs, self.clock = delete, keep_s, keep_runs, clock
        self._due: deque[tuple[float, str, int]] = deque()  # (due, run id, partition)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.deleted = 0

    def finished(self, run: JourneyRun, partition: int) -> None:
        """A run of an owned partition ended (here, or as read in a replay)."""
        if not run.finished or run.status == "compensation_failed":
            return
        self._due.append((ended_s(run) + self.keep_s, run.run_id, partition))
        if len(self._due) > self.keep_runs or self._due[0][0] <= self.clock():
            self._wake.set()

    def forget(self, partitions: set[int]) -> None:
        """Given up: their next owner deletes their runs (it reads them all again)."""
        self._due = deque(item for item in self._due if item[2] not in partitions)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="journey-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            while self._due and (
                len(self._due) > self.keep_runs or self._due[0][0] <= self.clock()
            ):
                _, run_id, _ = self._due.popleft()
                try:
                    await self.delete(run_id)
                    self.deleted += 1
                except NotSaved as exc:  # not ours any more, or Kafka away: the next owner's
                    log.info("run %s not deleted now: %s", run_id, exc)
            wait = min(IDLE_S, self._due[0][0] - self.clock()) if self._due else IDLE_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(wait, 0.01))
            self._wake.clear()
