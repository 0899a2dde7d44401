"""Exit codes of every `mbs` command, one table, so scripts and CI can tell a failed check
from a wrong call from a platform that is down."""

from __future__ import annotations

from enum import IntEnum

from mbs.errors import MbsError, ScaffoldRefused


class Exit(IntEnum):
    """What a script can rely on; the README has the same table."""

    OK = 0
    FAILED = 1  # the command ran and the answer is no: incompatible, violations, nothing found
    USAGE = 2  # called wrong: unknown option, bad value, a file that is not a contract
    PLATFORM = 3  # Kafka, the broker, the gateway or a tool could not be reached or started
    NOT_RUNNING = 4  # no local broker (`broker status`, `partners add`), nothing up (`ps`)
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), after cleaning up


class Failed(MbsError):
    """The command did its work and the answer is no (exit 1)."""


class Usage(MbsError):
    """The command was called with something it cannot use (exit 2)."""


class NotRunning(MbsError):
    """What the command needs (the local broker) is not running (exit 4)."""


def code_for(error: MbsError) -> Exit:
    """The exit code of an error that reached the command line."""
    if isinstance(error, Failed):
        return Exit.FAILED
    if isinstance(error, Usage | ScaffoldRefused):
        return Exit.USAGE
    if isinstance(error, NotRunning):
        return Exit.NOT_RUNNING
    return Exit.PLATFORM
