"""How `mbs run` processes log (issue 17): whole lines in files, JSON on request, start-up and
shutdown noise demoted, a failed start-up as one line."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from mbs.cli import logs
from mbs.cli.exits import Usage
from mbs.testing import free_port

LONG_ID = "run-" + "0123456789abcdef" * 12  # an id far wider than 80 columns


class Capture:
    """Loggers that write through one handler into a buffer, as configure_logging wires it."""

    NAMES = ("test.mbs", "aiokafka.consumer.group_coordinator", "uvicorn.error")

    def __init__(self) -> None:
        self.buffer = io.StringIO()

    def attach(self, fmt: str, level: int) -> None:
        handler = logs.build_handler(fmt, level)
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(self.buffer)
        for name in self.NAMES:
            logger = logging.getLogger(name)
            logger.handlers, logger.propagate = [handler], False
            if not name.startswith("aiokafka"):
                logger.setLevel(level)
        logging.getLogger("aiokafka").setLevel(logging.WARNING)  # as configure_logging does

    def text(self) -> str:
        return self.buffer.getvalue()

    def reset(self) -> None:
        for name in (*self.NAMES, "aiokafka"):
            logger = logging.getLogger(name)
            logger.handlers, logger.propagate = [], True
            logger.setLevel(logging.NOTSET)


@pytest.fixture
def capture() -> Iterator[Capture]:
    found = Capture()
    yield found
    found.reset()


def test_plain_lines_are_never_wrapped(capture: Capture) -> None:
    capture.attach("plain", logging.INFO)
    logging.getLogger("test.mbs").info("resuming run %s after a rebalance", LONG_ID)
    [line] = capture.text().splitlines()
    assert line.endswith(f"INFO    test.mbs: resuming run {LONG_ID} after a rebalance")
    assert line[:4].isdigit(), "an ISO 8601 time first"
    assert line[10] == "T"


def test_json_is_one_object_per_line_with_extra_fields(
    capture: Capture,
) -> None:
    capture.attach("json", logging.INFO)
    log = logging.getLogger("test.mbs")
    log.warning("reply to %s refused", LONG_ID, extra={"unit": "pricing", "attempt": 2})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("handler failed")
    first, second = (json.loads(line) for line in capture.text().splitlines())
    assert first["level"] == "WARNING"
    assert first["logger"] == "test.mbs"
    assert first["message"] == f"reply to {LONG_ID} refused"
    assert first["unit"] == "pricing"
    assert first["attempt"] == 2
    assert first["time"].endswith("Z")
    assert "ValueError: boom" in second["exception"]


def test_coordinator_not_available_at_start_is_not_an_error(
    capture: Capture,
) -> None:
    capture.attach("plain", logging.INFO)
    noise = "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError"
    logging.getLogger("aiokafka.consumer.group_coordinator").error(noise)
    logging.getLogger("test.mbs").info("callback for Task-12 is being executed...")
    logging.getLogger("aiokafka.consumer.group_coordinator").error("Heartbeat failed: real")
    assert capture.text().splitlines()[-1].endswith("Heartbeat failed: real")
    assert "Coordinator" not in capture.text()
    assert "callback for" not in capture.text()


def test_demoted_noise_is_still_there_at_debug(
    capture: Capture,
) -> None:
    capture.attach("plain", logging.DEBUG)
    logging.getLogger("aiokafka").setLevel(logging.DEBUG)
    logging.getLogger("aiokafka.consumer.group_coordinator").error(
        "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError"
    )
    assert " INFO    aiokafka.consumer.group_coordinator: Group Coordinator" in capture.text()


def test_a_startup_traceback_is_one_line(capture: Capture) -> None:
    capture.attach("plain", logging.INFO)
    trace = 'Traceback (most recent call last):\n  File "x.py", line 1\nOSError: no way\n'
    logging.getLogger("uvicorn.error").error(trace)
    [line] = capture.text().splitlines()
    assert line.endswith("OSError: no way (MBS_LOG_LEVEL=DEBUG for the traceback)")


@pytest.mark.parametrize(
    ("variable", "value"), [("MBS_LOG_FORMAT", "xml"), ("MBS_LOG_LEVEL", "LOUD")]
)
def test_a_bad_setting_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(Usage, match=variable):
        logs.log_format() if variable == "MBS_LOG_FORMAT" else logs.log_level()


def test_a_process_logging_into_a_file_writes_plain_lines() -> None:
    """configure_logging as `mbs run` calls it, stderr a pipe: no Rich, no wrapping."""
    code = (
        "import logging; from mbs.cli.logs import configure_logging; configure_logging(); "
        f"logging.getLogger('mbs.runner').info('unit serving %s', {LONG_ID!r})"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MBS_LOG")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    [line] = done.stderr.splitlines()
    assert line.endswith(f"INFO    mbs.runner: unit serving {LONG_ID}")
    as_json = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env, "MBS_LOG_FORMAT": "json"},
        timeout=60,
        check=False,
    )
    assert json.loads(as_json.stderr)["message"] == f"unit serving {LONG_ID}"


def test_a_secure_units_refused_topic_creation_is_info(capture: Capture) -> None:
    """Provisioning made the topic; the unit's principal may not create it, and says so."""
    capture.attach("plain", logging.INFO)
    logging.getLogger("test.mbs").warning(
        "Failed to create topic pricing.quote.v2: [Error 29] TopicAuthorizationFailedError: x"
    )
    [line] = capture.text().splitlines()
    assert " INFO    test.mbs: Failed to create topic pricing.quote.v2" in line


def test_an_unreachable_bootstrap_server_is_not_an_error_line(capture: Capture) -> None:
    """aiokafka says so at ERROR before the command's own line; kept for DEBUG only."""
    capture.attach("plain", logging.INFO)
    client = logging.getLogger("aiokafka.consumer.group_coordinator")
    client.error('Unable connect to "127.0.0.1:1": [Errno 111] Connect call failed')
    client.warning('Unable to request metadata from "127.0.0.1:1": timed out')
    client.error("Unable connect to node with id 1: refused")  # a member of a running cluster
    [line] = capture.text().splitlines()
    assert line.endswith(
        "ERROR   aiokafka.consumer.group_coordinator: Unable connect to node with id 1: refused"
    )


@pytest.mark.parametrize(
    "command",
    [
        ("run", "unit", "pricing"),
        ("run", "gateway", "--port", "FREE"),
        ("contracts", "list"),
        ("contracts", "check", "contracts/partners/fastship.json"),
    ],
    ids=" ".join,
)
def test_no_broker_is_our_one_line_only(command: tuple[str, ...]) -> None:
    """No library line before ours: the user reads one `error:` that says what to do."""
    command = tuple(str(free_port()) if arg == "FREE" else arg for arg in command)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MBS_LOG")}
    done = subprocess.run(
        [sys.executable, "-m", "mbs", *command],
        capture_output=True,
        text=True,
        env={**env, "MBS_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"},
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("error: cannot reach Kafka at 127.0.0.1:"), line
    assert "mbs broker up" in line
