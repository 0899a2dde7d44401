"""Consoles for command output: piped into a file or a CI log, tables are as wide as their
content (never a cell cut short); on a terminal, as wide as the terminal."""

from __future__ import annotations

import io
import sys

from rich.console import Console, RenderableType

PIPED_WIDTH = 160
_MEASURE_WIDTH = 100_000


def stdout() -> Console:
    """Tables and results (use `show` for tables: it widens a piped console to fit them)."""
    return Console(width=None if sys.stdout.isatty() else PIPED_WIDTH)


def stderr() -> Console:
    """Progress and errors; never wrapped mid-word."""
    return Console(stderr=True, soft_wrap=True)


def natural_width(renderable: RenderableType) -> int:
    """How many columns `renderable` takes when nothing limits it."""
    probe = Console(width=_MEASURE_WIDTH, file=io.StringIO(), color_system=None)
    return probe.measure(renderable).maximum


def show(*renderables: RenderableType) -> None:
    """Print to stdout. On a terminal, fit the terminal; piped, as wide as the widest
    renderable needs (at least PIPED_WIDTH), so no cell is truncated or wrapped."""
    if sys.stdout.isatty():
        console = Console()
    else:
        widest = max((natural_width(r) for r in renderables), default=0)
        console = Console(width=max(PIPED_WIDTH, widest))
    for renderable in renderables:
        console.print(renderable)
