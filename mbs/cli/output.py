"""`-o table|json` for every command that lists or reports: tables for people, one JSON
document on stdout for scripts (progress and errors stay on stderr either way)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import RenderableType

from mbs.cli import console


class Format(StrEnum):
    """How a command writes its result."""

    table = "table"
    json = "json"


OutputOption = Annotated[
    Format,
    typer.Option(
        "-o",
        "--output",
        case_sensitive=False,
        help="table: for people; json: one JSON document on stdout, for scripts.",
    ),
]


def emit(fmt: Format, data: Any, render: Callable[[], Sequence[RenderableType]]) -> None:
    """Write `data` as JSON, or what `render` draws of it; only what is asked is built."""
    if fmt is Format.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        console.show(*render())
