"""`python -m mbs.cli.supervise UP_DIR`: the detached process `mbs up` leaves behind. It runs
every process of the state file, restarts one that exits (with the platform's backoff, reset
once it has run for a while), records pids and restarts in the state file, and on SIGTERM
stops them all (SIGTERM, then SIGKILL after MBS_STOP_GRACE)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from mbs.backoff import Backoff
from mbs.cli.logs import configure_logging
from mbs.cli.processes import Process, ProcessGroup
from mbs.cli.upstate import ProcessState, UpDir, UpState, start_ticks
from mbs.errors import MbsError
from mbs.settings import get_settings

log = logging.getLogger("mbs.supervise")
TICK_S = 0.25
RESTART_BACKOFF = Backoff(first_s=0.5, max_s=30.0)


@dataclass(frozen=True)
class RestartPolicy:
    """How long to wait before restarting a process that exited: the platform's backoff per
    crash in a row; a process that ran `stable_s` without crashing starts the count afresh."""

    backoff: Backoff = RESTART_BACKOFF
    stable_s: float = 30.0

    def crashes_in_a_row(self, before: int, ran_s: float) -> int:
        return 1 if ran_s >= self.stable_s else before + 1

    def delay(self, crashes_in_a_row: int) -> float:
        return self.backoff.delay(crashes_in_a_row)


@dataclass
class _Slot:
    """One process's place: its current child, or when to start the next one."""

    state: ProcessState
    child: Process | None = None
    started_at: float = 0.0
    crashes: int = 0
    restart_at: float | None = None


@dataclass
class Supervisor:
    """Keeps every process of one `mbs up` running until told to stop."""

    up_dir: UpDir
    state: UpState
    grace_s: float
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    stopping: bool = False

    def __post_init__(self) -> None:
        self.group = ProcessGroup(
            self.up_dir.logs, env={"MBS_KAFKA_BOOTSTRAP": self.state.bootstrap}
        )
        self.slots = [_Slot(p) for p in self.state.processes]

    def run(self) -> None:
        """Start everything, watch until SIGTERM, stop everything."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop_asked)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            self.start_all()
            while not self.stopping:
                if self.tick(time.monotonic()):
                    self._save()
                time.sleep(TICK_S)
        finally:
            log.info("stopping %d processes", len(self.group.children))
            self.group.stop(self.grace_s)
            for slot in self.slots:
                slot.state.status = "stopped"
            self._save()
            log.info("stopped")

    def start_all(self) -> None:
        """Start every process once (a new log each) and record their pids."""
        for slot in self.slots:
            self._start(slot, first=True)
        self._save()

    def tick(self, now: float) -> bool:
        """Notice exits and start what is due; True when the state changed."""
        changed = False
        for slot in self.slots:
            if slot.child is not None and not slot.child.alive():
                self._exited(slot, now)
                changed = True
            elif slot.child is None and slot.restart_at is not None and now >= slot.restart_at:
                slot.state.restarts += 1
                self._start(slot, first=False)
                changed = True
        return changed

    def _exited(self, slot: _Slot, now: float) -> None:
        assert slot.child is not None
        code, pid = slot.child.popen.returncode, slot.child.popen.pid
        self.group.children.remove(slot.child)
        slot.child = None
        slot.crashes = self.policy.crashes_in_a_row(slot.crashes, now - slot.started_at)
        delay = self.policy.delay(slot.crashes)
        slot.restart_at = now + delay
        slot.state.status, slot.state.last_exit, slot.state.pid = "restarting", code, None
        log.warning(
            "%s (pid %s) exited with code %s; restarting in %.1fs (crash %d in a row; log %s)",
            slot.state.name,
            pid,
            code,
            delay,
            slot.crashes,
            slot.state.log,
        )

    def _start(self, slot: _Slot, *, first: bool) -> None:
        # the first start empties the log of an earlier `up`; a restart keeps why it died
        child = self.group.start(
            slot.state.name, *slot.state.args, env=slot.state.env, append=not first
        )
        slot.child, slot.started_at, slot.restart_at = child, time.monotonic(), None
        pid = child.popen.pid
        slot.state.pid, slot.state.started_ticks, slot.state.status = (
            pid,
            start_ticks(pid),
            "running",
        )
        log.info("started %s (pid %d) on port %d", slot.state.name, pid, slot.state.port)

    def _save(self) -> None:
        self.up_dir.write(self.state)

    def _stop_asked(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True


def main(argv: list[str]) -> int:
    """Supervise the processes of the state file in the up directory `argv[0]`."""
    configure_logging()
    up_dir = UpDir(Path(argv[0]))
    state = up_dir.read()
    if state is None:
        raise MbsError(f"no readable state in {up_dir.state_file}: run `mbs up`")
    state.supervisor_pid = pid = os.getpid()
    state.supervisor_ticks = start_ticks(pid)
    Supervisor(up_dir, state, grace_s=get_settings().stop_grace).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
