"""The logs of real unit and gateway processes (issue 17): whole lines in their files, one
JSON object per line with MBS_LOG_FORMAT=json, and no start-up or shutdown noise at INFO and
above."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mbs.testing import Process, ProcessGroup, free_port, wait_http_ok
from tests.conftest import private_topics

pytestmark = pytest.mark.kafka


@pytest.fixture
def group(kafka_bootstrap: str, tmp_path: Path, uid: str) -> Iterator[ProcessGroup]:
    found = ProcessGroup(
        tmp_path,
        env={
            "MBS_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "MBS_UNIT_PORT": "0",
            "MBS_UNIT_STATE_DIR": str(tmp_path / "units"),
            **private_topics(uid),
        },
    )
    try:
        yield found
    finally:
        found.stop()


def wait_logged(process: Process, text: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.alive(), process.tail()
        log = process.log_file.read_text(errors="replace")
        if text in log:
            return log
        time.sleep(0.2)
    raise AssertionError(f"{process.name} never logged {text!r}:\n{process.tail()}")


def stopped(group: ProcessGroup, process: Process) -> list[str]:
    group.stop()
    return process.log_file.read_text(errors="replace").splitlines()


def noise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        r
        for r in records
        if ("CoordinatorNotAvailable" in r["message"] and r["level"] == "ERROR")
        or r["message"].startswith("callback for ")
    ]


def test_a_unit_logs_json_lines_without_start_or_stop_noise(group: ProcessGroup, uid: str) -> None:
    alias = f"t{uid}"
    unit = group.start(
        alias, "pricing", alias, module="tests.aliased_unit", env={"MBS_LOG_FORMAT": "json"}
    )
    wait_logged(unit, f"unit {alias} serving")
    lines = stopped(group, unit)
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any(r["message"].startswith(f"unit {alias} serving") for r in records)
    assert any("shut down gracefully" in r["message"] for r in records)
    assert noise(records) == []


def test_a_unit_log_file_has_whole_lines(group: ProcessGroup, uid: str) -> None:
    alias = f"t{uid}"
    unit = group.start(alias, "pricing", alias, module="tests.aliased_unit")
    wait_logged(unit, f"unit {alias} serving")
    lines = stopped(group, unit)
    [ready] = [line for line in lines if f"unit {alias} serving" in line]
    assert f"{alias}.sqlite3" in ready, "the state path is on the same line, never wrapped"
    assert " INFO    mbs.runner: " in ready
    assert not any("callback for " in line for line in lines)
    assert not any("ERROR" in line and "CoordinatorNotAvailable" in line for line in lines)


def test_the_gateway_logs_json_lines(group: ProcessGroup) -> None:
    port = free_port()
    gateway = group.start(
        "gateway",
        *("run", "gateway", "--port", str(port)),
        env={"MBS_LOG_FORMAT": "json"},
    )
    wait_http_ok(f"http://127.0.0.1:{port}/readyz", group, timeout_s=90)
    lines = stopped(group, gateway)
    records = [json.loads(line) for line in lines]
    assert any(r["message"].startswith("gateway ready") for r in records)
    assert noise(records) == []
