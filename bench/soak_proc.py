"""What the soak reads from /proc: which pid is the interpreter, its RSS, and who else runs a
unit on this machine."""

from __future__ import annotations

import itertools
import os
from pathlib import Path


def python_pid(pid: int) -> int:
    """The interpreter running `-m mbs` in the process tree under `pid`: `pid` itself when
    ProcessGroup's `sys.executable` is the interpreter (a venv's python is a symlink, a pyenv
    shim execs), else the first such descendant (a wrapper that forks)."""
    queue = [pid]
    while queue:
        current = queue.pop(0)
        if _runs_mbs(current):
            return current
        queue += _children(current)
    raise RuntimeError(f"no `python -m mbs` process under pid {pid}")


def _runs_mbs(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        exe = Path(os.readlink(f"/proc/{pid}/exe")).name
    except OSError:
        return False
    return exe.startswith("python") and any(
        pair == (b"-m", b"mbs") for pair in itertools.pairwise(argv)
    )


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(stat.parent.name))
    return found


def other_units(units: tuple[str, ...], ours: list[int]) -> list[str]:
    """`mbs run unit NAME` processes (NAME in `units`) on this machine that are not the soak's:
    they join the same consumer groups (named after the unit and capability) and take a share
    of its requests."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        pid, command = int(cmdline.parent.name), " ".join(argv).strip()
        _, runs, unit = command.partition(" -m mbs run unit ")
        if runs and unit in units and pid not in ours:
            found.append(f"{pid} ({unit})")
    return found


def rss_mb(pid: int) -> float:
    """VmRSS of `pid` in MB (MiB: 1024 kB). OSError if the process is gone (a zombie has no
    VmRSS line)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ProcessLookupError(pid)
