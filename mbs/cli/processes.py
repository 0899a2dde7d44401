"""Start and stop the ecosystem's processes (units, gateway) as separate OS processes."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from mbs.errors import MbsError


@dataclass
class Process:
    """One child process with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_file: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class ProcessGroup:
    """Children started together and always stopped together, also on errors and Ctrl-C.
    `env` is added to the parent's environment; an empty value removes a variable. `cwd`:
    where the children run (the parent's directory if None)."""

    log_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    children: list[Process] = field(default_factory=list)
    cwd: Path | None = None

    def start(
        self,
        name: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        module: str = "mbs",
        append: bool = False,
    ) -> Process:
        """Run `python -m <module> <args>` (the `mbs` CLI unless told otherwise); `append`
        keeps what an earlier run of `name` logged (a restart must not erase why it died)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.log_dir / f"{name}.log"
        with log_file.open("ab" if append else "wb") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={k: v for k, v in {**os.environ, **self.env, **(env or {})}.items() if v},
                start_new_session=True,
                cwd=self.cwd,
            )
        child = Process(name, popen, log_file)
        self.children.append(child)
        return child

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM every child, wait, then SIGKILL what is left; nothing stays behind."""
        for child in self.children:
            if child.alive():
                signal_group(child.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in self.children:
            try:
                child.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_group(child.popen.pid, signal.SIGKILL)
                child.popen.wait()
        self.children.clear()

    def kill(self, child: Process) -> None:
        """SIGKILL one child (a crash, for tests and drills) and stop watching it."""
        signal_group(child.popen.pid, signal.SIGKILL)
        child.popen.wait()
        self.children.remove(child)

    def check_alive(self) -> None:
        for child in self.children:
            if not child.alive():
                raise MbsError(
                    f"process {child.name} exited with code {child.popen.returncode}; "
                    f"its log ({child.log_file}) ends with:\n{child.tail()}"
                )


class Watched(Protocol):
    """What a wait can ask whether the processes it waits for still live."""

    def check_alive(self) -> None: ...


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group `pid` leads; one already gone (or not ours) is left be."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def free_port(span: int = 1) -> int:
    """The first of `span` consecutive TCP ports on 127.0.0.1 nobody listens on right now.

    Drawn at random below the kernel's ephemeral range: a port from that range (what binding
    port 0 gives) can be taken by any outgoing connection before the server binds it, and a
    broker's controller at port + 1 lost that race once in CI."""
    top = _ephemeral_floor() - span
    low = 10_000 if top > 12_000 else 1_024
    for _ in range(1_000):
        base = random.randrange(low, top)
        if all(_bindable(port) for port in range(base, base + span)):
            return base
    raise MbsError(f"no {span} free consecutive ports in {low}-{top + span}")


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_http_ok(url: str, group: Watched, timeout_s: float = 60.0) -> None:
    """Poll `url` until it answers 2xx (a unit's /readyz says 204, the gateway's 200), failing
    fast if a child process died (`group.check_alive` raises)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        group.check_alive()
        try:
            if httpx.get(url, timeout=1.0).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise MbsError(f"{url} did not become ready within {timeout_s:g}s")
