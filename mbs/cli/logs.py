"""How `mbs run` processes log: Rich on a terminal, plain unwrapped lines in a file or pipe,
one JSON object per line with MBS_LOG_FORMAT=json; transient start-up noise demoted."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any

from rich.logging import RichHandler

from mbs.cli import console as mbs_console
from mbs.cli.exits import Usage

FORMATS = ("auto", "plain", "json", "rich")
PLAIN = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# (logger prefix, message pattern, level it is logged at instead)
DEMOTED: tuple[tuple[str, re.Pattern[str], int], ...] = (
    # every consumer group start asks for a coordinator before the broker has elected one;
    # aiokafka retries and logs each try at ERROR
    ("aiokafka", re.compile(r"CoordinatorNotAvailable"), logging.INFO),
    # a bootstrap server that does not answer: the command (or the health probe) says so
    # itself in one line that names the cause and what to do
    ("aiokafka", re.compile(r'^Unable (connect to|to request metadata from) "'), logging.INFO),
    # FastStream says so for every subscriber task that ends, which all do at shutdown
    ("", re.compile(r"^callback for \S+ is being executed"), logging.DEBUG),
    # in secure mode provisioning creates every topic; a unit's principal may not, and Kafka
    # says "not authorized" to its (redundant) attempt before it says "exists"
    ("", re.compile(r"^Failed to create topic \S+: \[Error 29\] TopicAuthorization"), logging.INFO),
)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class Demote(logging.Filter):
    """Logs known transient noise at a lower level, and drops it when that level is below
    `threshold` or its logger's own level."""

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        for prefix, pattern, level in DEMOTED:
            if record.name.startswith(prefix) and pattern.search(record.getMessage()):
                if level < record.levelno:
                    record.levelno, record.levelname = level, logging.getLevelName(level)
                shown = max(self.threshold, logging.getLogger(record.name).getEffectiveLevel())
                return record.levelno >= shown
        return True


class OneLineStartupFailure(logging.Filter):
    """uvicorn logs a failed start-up as a whole traceback; keep its last line (the error)
    unless MBS_LOG_LEVEL=DEBUG asks for everything."""

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.threshold > logging.DEBUG and message.startswith("Traceback (most recent"):
            last = [line for line in message.splitlines() if line.strip()][-1]
            record.msg, record.args = f"{last} (MBS_LOG_LEVEL=DEBUG for the traceback)", None
        return True


class PlainFormatter(logging.Formatter):
    """One line per record (a traceback follows it), UTC ISO 8601 times."""

    def __init__(self) -> None:
        super().__init__(PLAIN)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return _iso(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and every extra field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str)


def _iso(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def log_format() -> str:
    """MBS_LOG_FORMAT, with `auto` resolved: Rich on a terminal, plain lines otherwise."""
    chosen = os.environ.get("MBS_LOG_FORMAT", "auto").strip().lower() or "auto"
    if chosen not in FORMATS:
        raise Usage(f"MBS_LOG_FORMAT={chosen!r}: use one of {', '.join(FORMATS)}")
    if chosen == "auto":
        return "rich" if sys.stderr.isatty() else "plain"
    return chosen


def log_level() -> int:
    """MBS_LOG_LEVEL as a number (DEBUG, INFO, WARNING, ERROR)."""
    name = os.environ.get("MBS_LOG_LEVEL", "INFO").strip().upper()
    level = logging.getLevelName(name)
    if not isinstance(level, int):
        raise Usage(f"MBS_LOG_LEVEL={name!r}: use DEBUG, INFO, WARNING or ERROR")
    return level


def build_handler(fmt: str, level: int) -> logging.Handler:
    """The one handler of a process, on stderr, with the noise filters."""
    handler: logging.Handler
    if fmt == "rich":
        handler = RichHandler(console=mbs_console.stderr(), show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    handler.addFilter(Demote(level))
    handler.addFilter(OneLineStartupFailure(level))
    return handler


def configure_command_logging() -> None:
    """Log as a command other than `mbs run` does: warnings and errors as bare lines (what
    Python shows unconfigured), without the noise our own `error:` line says better. `mbs run`
    replaces this with configure_logging."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _COMMAND_HANDLER]:
        root.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_COMMAND_HANDLER)
    handler.setLevel(logging.WARNING)
    handler.addFilter(Demote(logging.WARNING))
    root.addHandler(handler)


_COMMAND_HANDLER = "mbs-command"


def configure_logging() -> None:
    """Log as `mbs run` processes do: MBS_LOG_LEVEL, MBS_LOG_FORMAT, aiokafka quiet. Every
    logger (uvicorn's too, when it is given no config of its own) goes through one handler."""
    level = log_level()
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(build_handler(log_format(), level))
    root.setLevel(level)
    # aiokafka's INFO is a line per connection and rebalance: only DEBUG asks for it
    logging.getLogger("aiokafka").setLevel(level if level <= logging.DEBUG else logging.WARNING)
