"""`mbs up|ps|logs|down` without Kafka: the options, the plan of processes and ports, the
state file, stopping only our own pids, the restart policy, the supervisor restarting a
process that exits, and the exit codes when nothing is up."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mbs.cli import main
from mbs.cli.exits import Usage
from mbs.cli.supervise import RestartPolicy, Supervisor
from mbs.cli.upstate import (
    ProcessState,
    UpDir,
    UpState,
    is_ours,
    parse_instances,
    parse_units,
    plan,
    start_ticks,
    stop_all,
)
from mbs.settings import Settings, get_settings
from mbs.testing import free_port

KNOWN = ["fastship", "inventory", "payments", "pricing"]
DECLARED = {"pricing": 9101, "inventory": 9102, "payments": 9103, "fastship": 9201}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private MBS_HOME, settings read afresh."""
    monkeypatch.setenv("MBS_HOME", str(tmp_path))
    for name in ("MBS_UNIT_PORT", "MBS_GATEWAY_PORT", "MBS_KAFKA_BOOTSTRAP"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def exit_code(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stopped:
        main(list(argv))
    code = stopped.value.code
    out, err = capsys.readouterr()
    return (code if isinstance(code, int) else 1), out, err


# -- options ----------------------------------------------------------------------------------


def test_units_default_to_all_and_keep_the_order_given() -> None:
    assert parse_units(None, KNOWN) == KNOWN
    assert parse_units("pricing, payments,pricing", KNOWN) == ["pricing", "payments"]


@pytest.mark.parametrize("text", ["", " , ", "pricing,nosuch"])
def test_units_that_name_nothing_known_are_usage(text: str) -> None:
    with pytest.raises(Usage):
        parse_units(text, KNOWN)


def test_instances_per_unit_and_gateway() -> None:
    assert parse_instances(["payments=2", "gateway=2,pricing=1"], KNOWN) == {
        "payments": 2,
        "gateway": 2,
        "pricing": 1,
    }
    assert parse_instances([], KNOWN) == {}


@pytest.mark.parametrize("value", ["payments", "payments=x", "payments=0", "payments=99", "x=2"])
def test_bad_instances_are_usage(value: str) -> None:
    with pytest.raises(Usage):
        parse_instances([value], KNOWN)


# -- the plan ---------------------------------------------------------------------------------


def test_first_instances_take_declared_ports_and_further_ones_free_ports(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, gateway_port=8088)
    found = plan(
        settings,
        UpDir.of(settings),
        units=["pricing", "payments"],
        declared_ports=DECLARED,
        instances={"payments": 2},
        gateway=True,
    )
    assert [p.name for p in found] == ["pricing", "payments-1", "payments-2", "gateway"]
    ports = {p.name: p.port for p in found}
    assert ports["pricing"] == 9101
    assert ports["payments-1"] == 9103
    assert ports["payments-2"] not in DECLARED.values()
    assert ports["gateway"] == 8088
    gateway = found[-1]
    assert gateway.args == ["run", "gateway"]
    assert gateway.env == {"MBS_GATEWAY_PORT": "8088", "MBS_INSTANCE_ID": "gateway"}
    # each instance a static group member under its own name: a restart by the supervisor
    # takes its partitions back without rebalancing the other instances
    assert [p.env["MBS_INSTANCE_ID"] for p in found] == [p.name for p in found]
    assert gateway.ready_url == "http://127.0.0.1:8088/readyz"
    assert found[2].args == ["run", "unit", "payments"]
    assert found[2].env == {
        "MBS_UNIT_PORT": str(ports["payments-2"]),
        "MBS_INSTANCE_ID": "payments-2",
    }
    assert found[0].log == str(tmp_path / "up" / "logs" / "pricing.log")


def test_unit_port_0_gives_every_unit_a_free_port(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, unit_port=0)
    found = plan(
        settings,
        UpDir.of(settings),
        units=["pricing", "inventory"],
        declared_ports=DECLARED,
        instances={},
        gateway=False,
    )
    assert [p.name for p in found] == ["pricing", "inventory"]
    assert not {p.port for p in found} & set(DECLARED.values())
    assert len({p.port for p in found}) == 2


def test_one_unit_port_for_every_unit_is_usage(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, unit_port=9999)
    with pytest.raises(Usage, match="MBS_UNIT_PORT=9999"):
        plan(
            settings,
            UpDir.of(settings),
            units=["pricing"],
            declared_ports=DECLARED,
            instances={},
            gateway=False,
        )


# -- the state file ---------------------------------------------------------------------------


def _state(tmp_path: Path, *processes: ProcessState) -> UpState:
    return UpState(
        bootstrap="127.0.0.1:9092",
        broker_started=False,
        broker_port=None,
        gateway_url=None,
        started_at=time.time(),
        processes=list(processes),
    )


def _process(tmp_path: Path, name: str, *args: str) -> ProcessState:
    return ProcessState(
        name=name,
        kind="unit",
        args=list(args),
        env={},
        port=free_port(),
        url="http://127.0.0.1:1/metrics",
        ready_url="http://127.0.0.1:1/readyz",
        log=str(tmp_path / "up" / "logs" / f"{name}.log"),
    )


def test_state_round_trips_and_a_broken_file_reads_as_nothing(tmp_path: Path) -> None:
    up_dir = UpDir(tmp_path / "up")
    assert up_dir.read() is None
    state = _state(tmp_path, _process(tmp_path, "pricing"))
    state.processes[0].restarts = 3
    up_dir.write(state)
    assert up_dir.read() == state
    assert json.loads(up_dir.state_file.read_text())["processes"][0]["restarts"] == 3
    assert [p.name for p in up_dir.root.iterdir()] == ["state.json"], "no temporary file left"
    up_dir.state_file.write_text("{not json")
    assert up_dir.read() is None


# -- our pids, and only ours ------------------------------------------------------------------


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield child
    child.kill()
    child.wait()


def test_a_pid_is_ours_only_with_its_start_time(sleeper: subprocess.Popen[bytes]) -> None:
    ticks = start_ticks(sleeper.pid)
    assert ticks is not None
    assert is_ours(sleeper.pid, ticks)
    if Path("/proc").is_dir():
        assert not is_ours(sleeper.pid, ticks + 1), "a reused pid is another process"
    assert not is_ours(None, None)


def test_stop_all_stops_ours_and_leaves_a_reused_pid_alone(
    sleeper: subprocess.Popen[bytes],
) -> None:
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    ticks = start_ticks(other.pid)
    assert ticks is not None
    try:
        stopped = stop_all([(other.pid, ticks), (sleeper.pid, ticks + 1), (None, None)], 5)
        assert stopped == [other.pid]
        assert other.wait(5) is not None
        assert sleeper.poll() is None, "not ours: left running"
    finally:
        other.kill()
        other.wait()


# -- restarts ---------------------------------------------------------------------------------


def test_restart_delays_back_off_and_reset_once_a_process_was_stable() -> None:
    policy = RestartPolicy()
    crashes, delays = 0, []
    for _ in range(8):
        crashes = policy.crashes_in_a_row(crashes, ran_s=1.0)
        delays.append(policy.delay(crashes))
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert policy.crashes_in_a_row(crashes, ran_s=policy.stable_s) == 1


def test_the_supervisor_restarts_a_process_that_exits(tmp_path: Path) -> None:
    """`python -m mbs --version` exits at once: each exit is noticed, recorded and followed
    by a restart after the backoff, its log appended to."""
    up_dir = UpDir(tmp_path / "up")
    state = _state(tmp_path, _process(tmp_path, "short-lived", "--version"))
    up_dir.write(state)
    supervisor = Supervisor(up_dir, state, grace_s=5)
    slot = supervisor.slots[0]
    supervisor.start_all()
    deadline = time.monotonic() + 30
    while state.processes[0].restarts < 2 and time.monotonic() < deadline:
        if supervisor.tick(time.monotonic()):
            up_dir.write(state)
        time.sleep(0.05)
    supervisor.group.stop(5)
    saved = up_dir.read()
    assert saved is not None
    assert saved.processes[0].restarts >= 2
    assert saved.processes[0].last_exit == 0
    assert slot.crashes >= 1
    assert Path(saved.processes[0].log).read_text().count("mbs ") >= 2, "restarts append"


# -- the commands, with nothing up ------------------------------------------------------------


@pytest.mark.usefixtures("home")
def test_nothing_up_ps_is_4_logs_is_4_down_is_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(capsys, "ps")[0] == 4
    assert exit_code(capsys, "ps", "-o", "json")[0] == 4
    assert exit_code(capsys, "logs")[0] == 4
    code, _, said = exit_code(capsys, "down")
    assert code == 0
    assert "nothing is up" in said


@pytest.mark.usefixtures("home")
@pytest.mark.parametrize(
    "argv",
    [
        ["up", "--units", "nosuch"],
        ["up", "--instances", "payments"],
        ["up", "--instances", "payments=0"],
        ["up", "--gateway-port", "0"],
        ["up", "--timeout", "0"],
    ],
)
def test_up_usage_errors_are_2_and_start_nothing(
    capsys: pytest.CaptureFixture[str], home: Path, argv: list[str]
) -> None:
    assert exit_code(capsys, *argv)[0] == 2
    assert not (home / "up").exists()


def test_a_taken_port_is_3_before_anything_starts(
    capsys: pytest.CaptureFixture[str], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MBS_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("MBS_UNIT_PORT", "0")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        code, _, said = exit_code(capsys, "up", "--units", "pricing", "--gateway-port", str(port))
    assert code == 3
    assert f"port {port} (gateway) is taken" in said
    assert not (home / "up" / "state.json").exists()


def test_logs_of_one_process_and_of_all(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    logs = home / "up" / "logs"
    logs.mkdir(parents=True)
    (logs / "pricing.log").write_text("one\ntwo\nthree\n")
    (logs / "gateway.log").write_text("ready\n")
    code, out, _ = exit_code(capsys, "logs", "pricing", "-n", "2")
    assert (code, out) == (0, "two\nthree\n")
    code, out, _ = exit_code(capsys, "logs", "-n", "1")
    assert (code, out) == (0, "gateway | ready\npricing | three\n")
    code, _, said = exit_code(capsys, "logs", "payments")
    assert code == 2
    assert "gateway, pricing" in said


def test_the_supervisor_module_runs_alone() -> None:
    """`up` starts it as `python -m mbs.cli.supervise`; without a state it says so."""
    done = subprocess.run(
        [sys.executable, "-m", "mbs.cli.supervise", "/nonexistent/up"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "MBS_LOG_FORMAT": "plain"},
    )
    assert done.returncode != 0
    assert "run `mbs up`" in done.stderr
