"""CPU time of processes, read from the OS: utime + stime of /proc/<pid>/stat, in clock
ticks, before and after a measured window; the difference divided by the work done in the
window is the CPU a journey (or a round trip) cost each process."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")
# Fields of /proc/<pid>/stat after "pid (comm) ", counted from 0: state is 0, ppid 1,
# utime 11 and stime 12 (fields 14 and 15 of proc(5), counted from 1).
_PPID, _UTIME, _STIME = 1, 11, 12


@dataclass(frozen=True)
class Stat:
    """What the bench needs from one /proc/<pid>/stat line."""

    pid: int
    comm: str
    ppid: int
    ticks: int  # utime + stime, this process's own threads (not its waited-for children)


def parse_stat(line: str) -> Stat:
    """Parse a /proc/<pid>/stat line. The command name sits in parentheses and may itself
    hold spaces and parentheses, so the fields are split after its last ')'."""
    opening, closing = line.index("("), line.rindex(")")
    fields = line[closing + 1 :].split()
    return Stat(
        pid=int(line[:opening]),
        comm=line[opening + 1 : closing],
        ppid=int(fields[_PPID]),
        ticks=int(fields[_UTIME]) + int(fields[_STIME]),
    )


def read_stat(pid: int) -> Stat | None:
    """The process's stat, or None once it is gone (or was never there)."""
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


Snapshot = dict[str, int | None]  # process name -> CPU ticks so far (None: not readable)
Pids = Mapping[str, int | None]  # process name -> pid (None: not measured, e.g. a remote broker)


def snapshot(pids: Pids) -> Snapshot:
    """The CPU ticks each process has used so far."""
    taken: Snapshot = {}
    for name, pid in pids.items():
        stat = read_stat(pid) if pid is not None else None
        taken[name] = stat.ticks if stat is not None else None
    return taken


def ms_per_item(before: Snapshot, after: Snapshot, items: float) -> dict[str, float | None]:
    """CPU milliseconds each process spent per item (journey, round trip) between two
    snapshots; None where a process was not readable at either end or no item was done."""
    spent: dict[str, float | None] = {}
    for name, start in before.items():
        end = after.get(name)
        if start is None or end is None or items <= 0:
            spent[name] = None
        else:
            spent[name] = round((end - start) * 1000 / CLK_TCK / items, 3)
    return spent


def total(values: Iterable[float | None]) -> float | None:
    """The sum of the known values; None if none is known."""
    known = [v for v in values if v is not None]
    return round(sum(known), 3) if known else None


def children_of(pid: int) -> list[int]:
    """Pids whose parent is `pid` (a scan of /proc)."""
    stats = (read_stat(int(e.name)) for e in PROC.iterdir() if e.name.isdigit())
    return [stat.pid for stat in stats if stat is not None and stat.ppid == pid]


def check_python(pids: Pids) -> None:
    """Each pid must be the Python interpreter itself (not a shell or a launcher in between)
    and do its work in-process: /proc/<pid>/exe is this interpreter and it has no child
    processes whose CPU the measurement would miss."""
    python = os.path.realpath(sys.executable)
    for name, pid in pids.items():
        if pid is None:
            continue
        exe = os.path.realpath(PROC / str(pid) / "exe")
        if exe != python:
            raise RuntimeError(f"{name} (pid {pid}) runs {exe}, not {python}")
        if kids := children_of(pid):
            raise RuntimeError(f"{name} (pid {pid}) has child processes {kids}: CPU missed")


def cwd_of(pid: int) -> Path:
    """The working directory of a running process."""
    return Path(os.readlink(PROC / str(pid) / "cwd")).resolve()
