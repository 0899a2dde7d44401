"""The `mbs` command line: every command, and what only commands need (the console, the
demo, child processes, the unit scaffold)."""

from mbs.cli.commands import app, configure_logging, main

__all__ = ["app", "configure_logging", "main"]
