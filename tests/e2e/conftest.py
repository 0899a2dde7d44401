"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.ecosystem import UNITS, Ecosystem


@pytest.fixture
def fresh(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Ecosystem]:
    """Every in-house unit and FastShip as processes, on a state of their own; no gateway."""
    ecosystem = Ecosystem(kafka_bootstrap, tmp_path)
    try:
        ecosystem.start_units(*UNITS)
        yield ecosystem
    finally:
        ecosystem.stop()
