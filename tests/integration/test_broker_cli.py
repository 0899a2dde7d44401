"""`mbs broker up|down|status|logs` on a private port and state directory: exit codes, a
secure broker seen without --secure, and Ctrl-C while Kafka starts leaving no java behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mbs.testing import free_port

pytestmark = pytest.mark.kafka


def mbs(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mbs", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def java_pids_for(port: int) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"kafka.Kafka" in cmdline and f"broker-{port}".encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def test_up_is_idempotent_and_down_leaves_no_java(tmp_path: Path) -> None:
    port = free_port(2)
    env = {k: v for k, v in os.environ.items() if k != "MBS_KAFKA_BOOTSTRAP"}
    env |= {"MBS_HOME": str(tmp_path), "MBS_BROKER_PORT": str(port)}
    try:
        first = mbs("broker", "up", env=env)
        assert first.returncode == 0, first.stderr
        assert f"127.0.0.1:{port}" in first.stderr
        [pid] = java_pids_for(port)

        second = mbs("broker", "up", env=env)
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stderr
        assert java_pids_for(port) == [pid], "a second `up` must not start a second broker"

        status = mbs("broker", "status", env=env)
        assert status.returncode == 0
        for expected in ("running", "3.9.1", f"127.0.0.1:{port}", str(tmp_path)):
            assert expected in status.stdout

        logs = mbs("broker", "logs", "-n", "500", env=env)
        assert "Kafka Server started" in logs.stdout
    finally:
        down = mbs("broker", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert java_pids_for(port) == []
    stopped = mbs("broker", "status", env=env)
    assert stopped.returncode == 4, "4: not running"
    assert "stopped" in stopped.stdout


def test_port_taken_by_something_else_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "MBS_KAFKA_BOOTSTRAP"}
        env |= {"MBS_HOME": str(tmp_path), "MBS_BROKER_PORT": str(port)}
        result = mbs("broker", "up", env=env)
    assert result.returncode == 3, "3: a platform error"
    assert f"port {port} is taken" in result.stderr
    assert "MBS_BROKER_PORT" in result.stderr


def test_missing_java_says_what_to_install(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MBS_KAFKA_BOOTSTRAP"}
    env |= {
        "MBS_HOME": str(tmp_path),
        "MBS_BROKER_PORT": str(free_port(2)),
        "PATH": str(Path(sys.executable).parent),
    }  # python only: no java, no mvn
    result = mbs("broker", "up", env=env)
    assert result.returncode == 3
    assert "`java` was not found" in result.stderr
    assert "JDK 17" in result.stderr


def test_bootstrap_env_uses_existing_cluster(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MBS_HOME": str(tmp_path),
        "MBS_KAFKA_BOOTSTRAP": "kafka.example.invalid:9092",
    }
    result = mbs("broker", "up", env=env)
    assert result.returncode == 0
    assert "existing cluster at kafka.example.invalid:9092" in result.stderr
    assert not (tmp_path / "broker-9092").exists()


def private_broker_env(tmp_path: Path) -> tuple[dict[str, str], int]:
    """MBS_HOME and a port (its controller's, port + 1, free too) of this test's own."""
    port = free_port(2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MBS_KAFKA")}
    return env | {"MBS_HOME": str(tmp_path), "MBS_BROKER_PORT": str(port)}, port


@pytest.mark.parametrize("command", [["broker", "up"], ["demo"]])
def test_ctrl_c_while_kafka_starts_leaves_no_broker(tmp_path: Path, command: list[str]) -> None:
    env, port = private_broker_env(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "mbs", *command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    seen = []
    try:
        for line in process.stderr:
            seen.append(line)
            if "starting Kafka" in line:
                process.send_signal(signal.SIGINT)
                break
        rest, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    said = "".join(seen) + (rest or "")
    assert process.returncode == 130, said
    assert java_pids_for(port) == [], f"a broker was left running:\n{said}"


def test_status_down_and_up_see_a_secure_broker_on_the_port(tmp_path: Path) -> None:
    env, port = private_broker_env(tmp_path)
    try:
        secure = mbs("broker", "up", "--secure", env=env)
        assert secure.returncode == 0, secure.stderr
        status = mbs("broker", "status", "-o", "json", env=env)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["mode"] == "secure"
        plain = mbs("broker", "up", env=env)
        assert plain.returncode == 3, plain.stderr
        assert "a secure broker already runs" in plain.stderr
        again = mbs("broker", "up", "--secure", env=env)
        assert again.returncode == 0, again.stderr
        assert "already provisioned" in again.stderr
    finally:
        down = mbs("broker", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert "stopping the secure broker" in down.stderr
    assert java_pids_for(port) == []
    assert mbs("broker", "status", env=env).returncode == 4
