"""What `mbs up` started, on disk: one JSON state file the supervisor keeps current, so `ps`,
`logs` and `down` (other processes, later, maybe after the terminal closed) know each
process, its pid, port and restarts, and stop exactly those and nothing else."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from mbs.cli.exits import Usage
from mbs.cli.processes import free_port, signal_group
from mbs.settings import Settings

GATEWAY = "gateway"
MAX_INSTANCES = 16
Status = Literal["starting", "running", "restarting", "stopped"]
_PROC = Path("/proc")


class ProcessState(BaseModel):
    """One process of the ecosystem as the supervisor runs it."""

    name: str  # `payments`, or `payments-2` when a unit runs several instances
    kind: Literal["unit", "gateway"]
    args: list[str]  # after `python -m mbs`
    env: dict[str, str]  # added to the supervisor's environment
    port: int
    url: str  # where a person reaches it: the gateway's API, a unit's ops port
    ready_url: str  # answers 2xx once it serves
    log: str
    pid: int | None = None
    started_ticks: int | None = None  # its start time in /proc: a reused pid is not ours
    restarts: int = 0
    status: Status = "starting"
    last_exit: int | None = None


class UpState(BaseModel):
    """Everything one `mbs up` started."""

    supervisor_pid: int | None = None
    supervisor_ticks: int | None = None
    bootstrap: str
    broker_started: bool  # `down` stops the broker only when `up` started it
    broker_port: int | None
    gateway_url: str | None
    started_at: float
    processes: list[ProcessState]


class UpDir:
    """`$MBS_HOME/up/`: the state file, the supervisor's pid and every process's log."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state_file = self.root / "state.json"
        self.logs = self.root / "logs"
        self.supervisor_log = self.logs / "supervisor.log"

    @classmethod
    def of(cls, settings: Settings) -> UpDir:
        """The up directory of these settings' MBS_HOME."""
        return cls(settings.home / "up")

    def read(self) -> UpState | None:
        """The last state written, or None when `up` never ran here (or left no readable state)."""
        try:
            return UpState.model_validate_json(self.state_file.read_bytes())
        except (OSError, ValidationError):
            return None

    def write(self, state: UpState) -> None:
        """Replace the state in one step: a reader sees the old file or the new, never half."""
        self.root.mkdir(parents=True, exist_ok=True)
        partial = self.state_file.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(state.model_dump_json(indent=2))
        os.replace(partial, self.state_file)

    def log_names(self) -> list[str]:
        """Every process (and the supervisor) that has a log here."""
        return sorted(p.stem for p in self.logs.glob("*.log")) if self.logs.is_dir() else []


def parse_units(text: str | None, known: Sequence[str]) -> list[str]:
    """`--units a,b` as unit names (all of them when not given); an unknown name is usage."""
    if text is None:
        return list(known)
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    if not chosen:
        raise Usage("--units is empty: name at least one unit, e.g. --units pricing,inventory")
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise Usage(f"no unit named {', '.join(unknown)}; known units: {', '.join(known)}")
    return list(dict.fromkeys(chosen))


def parse_instances(values: Iterable[str], known: Sequence[str]) -> dict[str, int]:
    """`--instances payments=2` (repeatable, or comma separated) as a count per name."""
    counts: dict[str, int] = {}
    for item in (part.strip() for value in values for part in value.split(",")):
        name, equals, count = item.partition("=")
        if not equals or not count.strip().isdigit():
            raise Usage(f"--instances {item!r}: write NAME=COUNT, e.g. --instances payments=2")
        if name.strip() not in (*known, GATEWAY):
            raise Usage(f"--instances: no unit named {name.strip()!r}; known: {', '.join(known)}")
        number = int(count)
        if not 1 <= number <= MAX_INSTANCES:
            raise Usage(f"--instances {item!r}: the count must be 1-{MAX_INSTANCES}")
        counts[name.strip()] = number
    return counts


def _instance_names(name: str, count: int) -> list[str]:
    return [name] if count == 1 else [f"{name}-{i}" for i in range(1, count + 1)]


def _reachable(host: str) -> str:
    """A listener on every address is reached on the loopback."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def plan(
    settings: Settings,
    up_dir: UpDir,
    *,
    units: Sequence[str],
    declared_ports: Mapping[str, int],
    instances: Mapping[str, int],
    gateway: bool,
) -> list[ProcessState]:
    """Every process to run with its port: a unit's first instance on its declared ops port
    (Prometheus scrapes those) unless MBS_UNIT_PORT=0 asks for free ports; further instances
    and a gateway's further instances on free ports."""
    if settings.unit_port not in (None, 0):
        raise Usage(
            f"MBS_UNIT_PORT={settings.unit_port} would give every unit the same port: unset it "
            "(declared ports) or set it to 0 (free ports)"
        )
    found: list[ProcessState] = []
    for unit in units:
        for i, name in enumerate(_instance_names(unit, instances.get(unit, 1))):
            wanted = declared_ports.get(unit, 0) if i == 0 and settings.unit_port is None else 0
            port = wanted or free_port()
            base = f"http://{_reachable(settings.unit_host)}:{port}"
            found.append(
                ProcessState(
                    name=name,
                    kind="unit",
                    args=["run", "unit", unit],
                    env={"MBS_UNIT_PORT": str(port), "MBS_INSTANCE_ID": name},
                    port=port,
                    url=f"{base}/metrics",
                    ready_url=f"{base}/readyz",
                    log=str(up_dir.logs / f"{name}.log"),
                )
            )
    if gateway:
        for i, name in enumerate(_instance_names(GATEWAY, instances.get(GATEWAY, 1))):
            port = settings.gateway_port if i == 0 else free_port()
            base = f"http://{_reachable(settings.gateway_host)}:{port}"
            found.append(
                ProcessState(
                    name=name,
                    kind="gateway",
                    args=["run", "gateway"],
                    env={"MBS_GATEWAY_PORT": str(port), "MBS_INSTANCE_ID": name},
                    port=port,
                    url=base,
                    ready_url=f"{base}/readyz",
                    log=str(up_dir.logs / f"{name}.log"),
                )
            )
    return found


# -- processes by pid, and only ours ----------------------------------------------------------


def start_ticks(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), None when it is gone or a zombie; without
    /proc (not Linux), 0 for any live pid."""
    if not _PROC.is_dir():
        return 0 if _signal_ok(pid) else None
    try:
        fields = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def _signal_ok(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_ours(pid: int | None, ticks: int | None) -> bool:
    """`pid` still runs and is the process recorded (not another that got its number since)."""
    if pid is None:
        return False
    now = start_ticks(pid)
    return now is not None and (ticks is None or now in (0, ticks))


def stop_all(recorded: Iterable[tuple[int | None, int | None]], grace_s: float) -> list[int]:
    """SIGTERM the process group led by each recorded (pid, start ticks) that is still ours,
    SIGKILL what is left after `grace_s`; returns the pids that were stopped. A pid another
    process got since is left alone."""
    live = [(pid, ticks) for pid, ticks in recorded if pid is not None and is_ours(pid, ticks)]
    for pid, _ in live:
        signal_group(pid, signal.SIGTERM)
    for sig, wait_s in ((signal.SIGKILL, grace_s), (None, 5.0)):
        deadline = time.monotonic() + wait_s
        while any(is_ours(p, t) for p, t in live) and time.monotonic() < deadline:
            time.sleep(0.1)
        if sig is not None:
            for pid, ticks in live:
                if is_ours(pid, ticks):
                    signal_group(pid, sig)
    return [pid for pid, _ in live if pid is not None]
