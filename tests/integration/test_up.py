"""`mbs up` on the real broker: it keeps the broker that already runs, returns once every
process is ready, a journey runs through the gateway it started, a unit killed with SIGKILL
is restarted and healthy again, and `mbs down` leaves none of its pids alive and the broker
running."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mbs.cli.upstate import is_ours
from mbs.settings import Settings
from mbs.testing import free_port
from tests.conftest import private_topics

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]
UNITS = "pricing,payments,inventory"
CALLER = {"X-API-Key": "dev-caller-key"}


def mbs(env: dict[str, str], *args: str, timeout: float = 200) -> subprocess.CompletedProcess[str]:
    merged = {k: v for k, v in {**os.environ, **env}.items() if v}  # "" removes a variable
    return subprocess.run(
        [sys.executable, "-m", "mbs", *args],
        env=merged,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ps(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    shown = mbs(env, "ps", "-o", "json", timeout=60)
    return shown.returncode, json.loads(shown.stdout) if shown.stdout.strip() else {}


@pytest.fixture
def up_env(kafka_bootstrap: str, tmp_path: Path, uid: str) -> Iterator[dict[str, str]]:
    """A private MBS_HOME, free ports, private topics; the session's broker found by its port
    (not named by MBS_KAFKA_BOOTSTRAP, unless the session runs on one named so), so `up` has
    to notice it runs. Whatever the test did, `down` runs at the end."""
    named = Settings().kafka_bootstrap
    env = {
        "MBS_HOME": str(tmp_path / "home"),
        "MBS_UNIT_PORT": "0",
        "MBS_GATEWAY_PORT": str(free_port()),
        "MBS_UNIT_STATE_DIR": str(tmp_path / "units"),
        "MBS_KAFKA_BOOTSTRAP": named or "",
        "MBS_BROKER_PORT": kafka_bootstrap.rsplit(":", 1)[1],
        **private_topics(uid),
    }
    try:
        yield env
    finally:
        mbs(env, "down", timeout=120)


def _broker_answers(bootstrap: str) -> bool:
    host, port = bootstrap.split(",", maxsplit=1)[0].rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, int(port))) == 0


def _wait_restarted(env: dict[str, str], name: str, old_pid: int) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        code, shown = ps(env)
        row = next(p for p in shown["processes"] if p["name"] == name)
        if code == 0 and row["pid"] not in (None, old_pid) and row["health"] == "healthy":
            return row
        time.sleep(0.5)
    raise AssertionError(f"{name} was not restarted and healthy within 90s: {shown}")


def test_up_ps_journey_restart_down(up_env: dict[str, str], kafka_bootstrap: str) -> None:
    began = time.monotonic()
    started = mbs(up_env, "up", "--units", UNITS, "--instances", "payments=2")
    assert started.returncode == 0, started.stderr
    assert "ready" in started.stderr
    if not up_env["MBS_KAFKA_BOOTSTRAP"]:
        assert "kept" in started.stderr, "the running broker is noticed and left alone"
    took_up = time.monotonic() - began

    code, shown = ps(up_env)
    assert code == 0, shown
    assert shown["state"] == "up"
    assert shown["broker_started_by_up"] is False
    names = [p["name"] for p in shown["processes"]]
    assert names == ["pricing", "payments-1", "payments-2", "inventory", "gateway"]
    assert {p["health"] for p in shown["processes"]} == {"healthy"}
    assert all(p["restarts"] == 0 for p in shown["processes"])
    gateway = shown["gateway_url"]
    assert gateway == f"http://127.0.0.1:{up_env['MBS_GATEWAY_PORT']}"

    response = httpx.post(
        f"{gateway}/journeys/quote-and-reserve",
        json={"order_id": "up-1", "sku": "milk-jug-350ml", "quantity": 2},
        headers=CALLER,
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"

    victim = next(p for p in shown["processes"] if p["name"] == "payments-1")
    os.kill(victim["pid"], signal.SIGKILL)
    again = _wait_restarted(up_env, "payments-1", victim["pid"])
    assert again["restarts"] == 1
    assert again["last_exit"] == -signal.SIGKILL
    assert again["port"] == victim["port"], "a restart keeps the port Prometheus scrapes"

    supervisor_log = mbs(up_env, "logs", "supervisor", "-n", "20", timeout=60)
    assert supervisor_log.returncode == 0
    assert "payments-1" in supervisor_log.stdout
    assert "exited with code -9" in supervisor_log.stdout
    unit_log = mbs(up_env, "logs", "payments-1", "-n", "200", timeout=60)
    assert unit_log.stdout.count("app starting") == 2, "the restart appends to its log"

    _, final = ps(up_env)
    pids = [final["supervisor_pid"], victim["pid"]] + [p["pid"] for p in final["processes"]]
    stopped = mbs(up_env, "down", timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert "left running" in stopped.stderr
    alive = [pid for pid in pids if is_ours(pid, None)]
    assert alive == [], f"still running after `mbs down`: {alive}"
    assert _broker_answers(kafka_bootstrap), "`down` never stops a broker `up` did not start"
    assert ps(up_env)[0] == 4
    print(f"mbs up took {took_up:.1f}s")
