"""`mbs broker up|down|status|logs` on a private port and state directory."""

from __future__ import annotations

import os
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
    port = free_port()
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
    assert stopped.returncode == 3
    assert "stopped" in stopped.stdout


def test_port_taken_by_something_else_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "MBS_KAFKA_BOOTSTRAP"}
        env |= {"MBS_HOME": str(tmp_path), "MBS_BROKER_PORT": str(port)}
        result = mbs("broker", "up", env=env)
    assert result.returncode == 2
    assert f"port {port} is taken" in result.stderr
    assert "MBS_BROKER_PORT" in result.stderr


def test_missing_java_says_what_to_install(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MBS_KAFKA_BOOTSTRAP"}
    env |= {
        "MBS_HOME": str(tmp_path),
        "MBS_BROKER_PORT": str(free_port()),
        "PATH": str(Path(sys.executable).parent),
    }  # python only: no java, no mvn
    result = mbs("broker", "up", env=env)
    assert result.returncode == 2
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
