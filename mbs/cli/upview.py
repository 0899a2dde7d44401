"""`mbs ps` and `mbs logs`: what `mbs up` runs, each process probed on its HTTP port, and
the log each one writes to its own file."""

from __future__ import annotations

import contextlib
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Annotated, Any

import httpx
import typer
from rich.table import Table

from mbs.cli.common import say, settings_for
from mbs.cli.exits import Exit, Usage
from mbs.cli.output import Format, OutputOption, emit
from mbs.cli.upstate import ProcessState, UpDir, UpState, is_ours

PROBE_TIMEOUT_S = 1.0
COLOURS = {"healthy": "green", "starting": "yellow", "unready": "yellow"}


def health(process: ProcessState) -> str:
    """healthy: ready (2xx); unready: it answers, not ready; starting: running, no answer yet;
    down: its pid is gone (the supervisor restarts it)."""
    if not is_ours(process.pid, process.started_ticks):
        return "down"
    try:
        answer = httpx.get(process.ready_url, timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError:
        return "starting"
    return "healthy" if answer.is_success else "unready"


def rows(state: UpState) -> list[dict[str, Any]]:
    """One row per process, probed in parallel (a listing takes one probe's time)."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(health, state.processes))
    return [
        {
            "name": p.name,
            "kind": p.kind,
            "pid": p.pid if is_ours(p.pid, p.started_ticks) else None,
            "health": seen,
            "status": p.status,
            "port": p.port,
            "url": p.url,
            "restarts": p.restarts,
            "last_exit": p.last_exit,
            "log": p.log,
        }
        for p, seen in zip(state.processes, found, strict=True)
    ]


def ps(output: OutputOption = Format.table) -> None:
    """The processes `mbs up` runs, and whether each is healthy.

    Per process: pid, health (its /readyz asked now: healthy, unready, starting, down), port,
    URL, restarts and the last exit code. Exit 0 when every process is healthy, 1 when one is
    not, 4 when nothing is up."""
    up_dir = UpDir.of(settings_for())
    state = up_dir.read()
    supervised = state is not None and is_ours(state.supervisor_pid, state.supervisor_ticks)
    if state is None or not (
        supervised or any(is_ours(p.pid, p.started_ticks) for p in state.processes)
    ):
        say("nothing is up: `mbs up` starts the broker, the units and the gateway")
        raise typer.Exit(Exit.NOT_RUNNING)
    found = rows(state)
    data: dict[str, Any] = {
        "state": "up" if supervised else "unsupervised",
        "supervisor_pid": state.supervisor_pid if supervised else None,
        "bootstrap": state.bootstrap,
        "broker_started_by_up": state.broker_started,
        "gateway_url": state.gateway_url,
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(state.started_at)),
        "processes": found,
    }

    def render() -> list[Table]:
        table = Table("name", "pid", "health", "port", "url", "restarts", "last exit")
        for row in found:
            colour = COLOURS.get(row["health"], "red")
            last = _exit_text(row["last_exit"])
            cells = (row["name"], str(row["pid"] or "-"), f"[{colour}]{row['health']}[/]")
            table.add_row(*cells, str(row["port"]), row["url"], str(row["restarts"]), last)
        return [table]

    emit(output, data, render)
    if not supervised:
        say("the supervisor is gone: nothing restarts these; `mbs down` stops them")
    if any(row["health"] != "healthy" for row in found):
        raise typer.Exit(Exit.FAILED)


def _exit_text(code: int | None) -> str:
    """-9 reads better as SIGKILL: a negative code is the signal that ended the process."""
    if code is None:
        return "-"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"{code} ({signal.Signals(-code).name})"
    return str(code)


def logs(
    name: Annotated[
        str | None,
        typer.Argument(
            help="A process as `mbs ps` names it (payments, payments-2, gateway) or supervisor "
            "(default: every one, each line prefixed with its name).",
            show_default=False,
        ),
    ] = None,
    lines: Annotated[int, typer.Option("-n", "--lines", min=0, help="How many lines.")] = 50,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing.")] = False,
) -> None:
    """Print the logs of the processes `mbs up` started.

    The last N lines (-n) of one process's log, or of every one; -f keeps printing (a
    restarted process appends to its log). Exit 4 if `mbs up` never ran here."""
    up_dir = UpDir.of(settings_for())
    known = up_dir.log_names()
    if not known:
        say(f"no logs: `mbs up` has not run here (no {up_dir.logs})")
        raise typer.Exit(Exit.NOT_RUNNING)
    if name is not None and name not in known:
        raise Usage(f"no log of {name!r}; there are: {', '.join(known)}")
    chosen = [name] if name is not None else known
    files = {n: up_dir.logs / f"{n}.log" for n in chosen}
    prefix = len(files) > 1
    for label, path in files.items():
        for line in _last(path, lines):
            print(f"{label} | {line}" if prefix else line)
    if follow:
        _follow(files, prefix)


def _last(path: Path, lines: int) -> list[str]:
    if lines == 0:
        return []
    return path.read_text(errors="replace").splitlines()[-lines:]


def _follow(files: dict[str, Path], prefix: bool) -> None:
    """Print what each file gains, until Ctrl-C; a restart appends to the same file."""
    opened: dict[str, IO[str]] = {}
    try:
        for label, path in files.items():
            opened[label] = path.open(errors="replace")
            opened[label].seek(0, 2)
        while True:
            quiet = True
            for label, log in opened.items():
                while line := log.readline():
                    quiet = False
                    print(f"{label} | {line}" if prefix else line, end="", flush=True)
            if quiet:
                time.sleep(0.3)
    except KeyboardInterrupt:
        raise typer.Exit(Exit.INTERRUPTED) from None
    finally:
        for log in opened.values():
            log.close()
