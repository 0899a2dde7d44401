"""`mbs up` and `mbs down`: the whole local ecosystem (the broker, every unit, the gateway) in
the background, kept running after the terminal closes by a detached supervisor that restarts
what crashes; `down` stops exactly what `up` started (the broker only if `up` started it)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from types import FrameType
from typing import Annotated

import typer

from mbs.broker import LocalBroker
from mbs.cli.common import say, settings_for
from mbs.cli.exits import Exit
from mbs.cli.processes import wait_http_ok
from mbs.cli.upstate import (
    GATEWAY,
    ProcessState,
    UpDir,
    UpState,
    is_ours,
    parse_instances,
    parse_units,
    plan,
    stop_all,
)
from mbs.errors import BrokerError, MbsError
from mbs.settings import Settings
from mbs.unit.ecosystem import load_ecosystem

UnitsOption = Annotated[
    str | None,
    typer.Option(
        "--units",
        metavar="A,B",
        show_default=False,
        help="Only these units, comma separated (default: every unit of the checkout, "
        "partners included).",
    ),
]
InstancesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--instances",
        metavar="NAME=N",
        show_default=False,
        help="Run N instances of a unit (or of the gateway), e.g. payments=2; repeat the "
        "option or separate by commas. Further instances take free ports.",
    ),
]
GatewayOption = Annotated[
    bool, typer.Option("--gateway/--no-gateway", help="Start the gateway too.")
]
GatewayPortOption = Annotated[
    int | None,
    typer.Option(
        "--gateway-port",
        min=1,
        max=65535,
        show_default=False,
        help="The gateway's HTTP port (env MBS_GATEWAY_PORT, default 8080).",
    ),
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=1,
        show_default=False,
        help="Seconds to wait for every process to be ready (env MBS_UP_TIMEOUT, default 120).",
    ),
]


class _Crashed(MbsError):
    """A process exited while `up` waited for it to be ready."""


class _StartWatch:
    """What `up` checks between readiness polls: the supervisor lives, and no process has
    exited (a crash at start-up is an error to show, not something to retry quietly)."""

    def __init__(self, up_dir: UpDir, supervisor: subprocess.Popen[bytes]) -> None:
        self.up_dir, self.supervisor = up_dir, supervisor

    def check_alive(self) -> None:
        if self.supervisor.poll() is not None:
            log = self.up_dir.supervisor_log
            raise _Crashed(
                f"the supervisor exited with code {self.supervisor.returncode}; its log "
                f"({log}) ends with:\n{_tail(str(log))}"
            )
        state = self.up_dir.read()
        for process in state.processes if state is not None else []:
            if process.restarts or process.status == "restarting":
                raise _Crashed(
                    f"{process.name} exited with code {process.last_exit} while starting; "
                    f"its log ({process.log}) ends with:\n{_tail(process.log)}"
                )


def up(
    units: UnitsOption = None,
    instances: InstancesOption = None,
    gateway: GatewayOption = True,
    gateway_port: GatewayPortOption = None,
    timeout: TimeoutOption = None,
) -> None:
    """Start the broker, every unit and the gateway in the background.

    A detached supervisor keeps them running after this terminal closes and restarts one that
    crashes (with backoff). A broker already running is used and left alone. Returns once
    every process is ready. State and logs: MBS_HOME/up. Then `mbs ps`, `mbs logs NAME`,
    `mbs down`. Exit 3 when a process does not start (its log is shown), 130 on Ctrl-C, after
    stopping what it started."""
    settings = settings_for()
    if gateway_port is not None:
        settings = settings.model_copy(update={"gateway_port": gateway_port})
    ecosystem = load_ecosystem()
    known = ecosystem.unit_names()
    chosen, counts = parse_units(units, known), parse_instances(instances or [], known)
    up_dir = UpDir.of(settings)
    previous = up_dir.read()
    if previous is not None and is_ours(previous.supervisor_pid, previous.supervisor_ticks):
        say(
            f"already up (supervisor pid {previous.supervisor_pid}): `mbs ps` shows it; "
            "`mbs down` first to start it again differently"
        )
        return
    if previous is not None:
        _stop_leftovers(previous, settings)
    processes = plan(
        settings,
        up_dir,
        units=chosen,
        declared_ports=ecosystem.ports,
        instances=counts,
        gateway=gateway,
    )
    _check_ports_free(processes)
    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    started: UpState | None = None
    supervisor: subprocess.Popen[bytes] | None = None
    try:
        bootstrap, broker = _broker_for(settings)
        # an earlier `up` whose supervisor is gone started the broker still running: ours
        inherited = (
            previous is not None
            and previous.broker_started
            and previous.broker_port == settings.broker_port
            and not settings.kafka_bootstrap
        )
        owns_broker = broker is not None or inherited
        started = UpState(
            bootstrap=bootstrap,
            broker_started=owns_broker,
            broker_port=settings.broker_port if owns_broker else None,
            gateway_url=next((p.url for p in processes if p.kind == GATEWAY), None),
            started_at=time.time(),
            processes=processes,
        )
        up_dir.write(started)
        supervisor = _spawn(up_dir)
        _wait_ready(up_dir, supervisor, processes, timeout or settings.up_timeout)
    except KeyboardInterrupt:
        say("interrupted: stopping what `mbs up` started")
        _tear_down(up_dir, started, supervisor, settings)
        raise typer.Exit(Exit.INTERRUPTED) from None
    except BaseException:
        _tear_down(up_dir, started, supervisor, settings)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_term)
    gate = started.gateway_url
    say(
        f"up: {len(processes)} processes under supervisor pid {supervisor.pid}"
        + (f"; the gateway on [bold]{gate}[/] (OpenAPI at {gate}/docs)" if gate else "")
    )
    say("`mbs ps` shows them, `mbs logs NAME` their logs, `mbs down` stops everything")


def down() -> None:
    """Stop everything `mbs up` started, and nothing else.

    The supervisor, every unit and gateway (SIGTERM, then SIGKILL after MBS_STOP_GRACE
    seconds, default 15), and the broker only if `up` started it."""
    settings = settings_for()
    up_dir = UpDir.of(settings)
    state = up_dir.read()
    if state is None or not _anything_left(state):
        say(f"nothing is up here ({up_dir.root})")
        return
    _tear_down(up_dir, state, None, settings)


def _anything_left(state: UpState) -> bool:
    return (
        state.broker_started
        or is_ours(state.supervisor_pid, state.supervisor_ticks)
        or any(is_ours(p.pid, p.started_ticks) for p in state.processes)
    )


def _tear_down(
    up_dir: UpDir,
    state: UpState | None,
    supervisor: subprocess.Popen[bytes] | None,
    settings: Settings,
) -> None:
    """Stop the supervisor (it stops its processes), then any process it left, then the
    broker if `up` started it. A second Ctrl-C must not cut this short."""
    held = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if supervisor is not None:
            stop_all([(supervisor.pid, None)], settings.stop_grace + 10)
            supervisor.wait()
        elif state is not None and state.supervisor_pid is not None:
            pid, ticks = state.supervisor_pid, state.supervisor_ticks
            if stop_all([(pid, ticks)], settings.stop_grace + 10):
                say(f"supervisor (pid {pid}) stopped, and with it its processes")
        latest = up_dir.read() or state
        if latest is None:
            return
        left = stop_all([(p.pid, p.started_ticks) for p in latest.processes], settings.stop_grace)
        if left:
            say(f"stopped {len(left)} processes the supervisor had left: pids {left}")
        say(f"stopped: {', '.join(p.name for p in latest.processes) or 'no process'}")
        if latest.broker_started and latest.broker_port is not None:
            port = latest.broker_port
            LocalBroker(settings.model_copy(update={"broker_port": port})).down(progress=say)
        else:
            say("the broker was not started by `mbs up`: left running")
        for process in latest.processes:
            process.status = "stopped"
        latest.supervisor_pid, latest.broker_started = None, False
        up_dir.write(latest)
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)


def _stop_leftovers(previous: UpState, settings: Settings) -> None:
    """An earlier `up` whose supervisor is gone may have left processes running."""
    left = stop_all([(p.pid, p.started_ticks) for p in previous.processes], settings.stop_grace)
    if left:
        say(f"stopped {len(left)} processes an earlier `mbs up` left without a supervisor")


def _broker_for(settings: Settings) -> tuple[str, LocalBroker | None]:
    """The bootstrap address, and the local broker when `up` started it (None: it was
    already there, or MBS_KAFKA_BOOTSTRAP names another cluster; either is left alone)."""
    if settings.kafka_bootstrap:
        say(f"MBS_KAFKA_BOOTSTRAP is set: using the cluster at {settings.bootstrap}")
        return settings.kafka_bootstrap, None
    broker = LocalBroker.on_port(settings, None)
    status = broker.status()
    if status.running and broker.secure:
        raise BrokerError(
            f"a secure broker runs on {broker.address}: `mbs up` runs the ecosystem on a plain "
            "one. Stop it (`mbs broker down`) or set MBS_BROKER_PORT to another port."
        )
    if status.running:
        say(f"broker already running (pid {status.pid}) on {broker.address}: kept")
        return broker.address, None
    if _listening("127.0.0.1", broker.port):
        import asyncio

        from mbs.cli.serve import kafka_reachable

        asyncio.run(kafka_reachable(settings))  # not Kafka after all: one line, exit 3
        say(f"a Kafka broker not started from {settings.home} answers on {broker.address}: kept")
        return broker.address, None
    broker.up(progress=say)
    return broker.address, broker


def _spawn(up_dir: UpDir) -> subprocess.Popen[bytes]:
    """The supervisor, in a session of its own: closing this terminal does not reach it."""
    up_dir.logs.mkdir(parents=True, exist_ok=True)
    with up_dir.supervisor_log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mbs.cli.supervise", str(up_dir.root)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _wait_ready(
    up_dir: UpDir,
    supervisor: subprocess.Popen[bytes],
    processes: list[ProcessState],
    timeout_s: float,
) -> None:
    names = ", ".join(p.name for p in processes)
    say(f"supervisor pid {supervisor.pid}; waiting up to {timeout_s:g}s for {names}")
    watch = _StartWatch(up_dir, supervisor)
    begun = time.monotonic()
    for process in processes:
        left = max(1.0, timeout_s - (time.monotonic() - begun))
        try:
            wait_http_ok(process.ready_url, watch, timeout_s=left)
        except _Crashed:
            raise
        except MbsError as exc:
            raise MbsError(
                f"{process.name}: {exc}; its log ({process.log}) ends with:\n{_tail(process.log)}"
            ) from None
        took = time.monotonic() - begun
        say(f"  {process.name} ready on {process.url} ({took:.1f}s)")


def _check_ports_free(processes: list[ProcessState]) -> None:
    for process in processes:
        if not _bindable(process.port):
            fix = (
                "pick another with --gateway-port or MBS_GATEWAY_PORT"
                if process.kind == GATEWAY
                else "set MBS_UNIT_PORT=0 to give every unit a free port"
            )
            raise MbsError(
                f"port {process.port} ({process.name}) is taken: another `mbs up`, `mbs demo` or "
                f"`mbs run`? Stop it, or {fix}."
            )


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as log:
            return "\n".join(log.read().splitlines()[-lines:])
    except OSError:
        return ""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
