"""Consoles for command output: full-width tables even when piped into a file or CI log."""

from __future__ import annotations

import sys

from rich.console import Console

PIPED_WIDTH = 160


def stdout() -> Console:
    """Tables and results."""
    return Console(width=None if sys.stdout.isatty() else PIPED_WIDTH)


def stderr() -> Console:
    """Progress and errors; never wrapped mid-word."""
    return Console(stderr=True, soft_wrap=True)
