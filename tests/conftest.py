"""Shared fixtures: one real Kafka broker for the whole session, unique names per test, and
the one rule for tests that need a tool: skipped without it locally, failed under CI."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import NoReturn

import pytest

from mbs.broker import LocalBroker
from mbs.settings import Settings

# Units started by tests keep their state in a directory of this test session, never in the
# developer's MBS_HOME (stock and charges persist: a test must not inherit another's).
os.environ.setdefault("MBS_UNIT_STATE_DIR", tempfile.mkdtemp(prefix="mbs-test-units-"))


def in_ci() -> bool:
    """CI=true (or 1, yes): a test that needs a missing tool fails there, so CI cannot pass
    by skipping what it was meant to run."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _missing(what: str, install: str) -> NoReturn:
    message = f"{what} is not installed ({install})"
    if in_ci():
        pytest.fail(f"{message}; CI must have it", pytrace=False)
    pytest.skip(message)


def require_tool(name: str, install: str) -> str:
    """The path of the command-line tool `name` (kcat, promtool, prometheus, docker-compose,
    node, ...); missing, the test is skipped locally and fails under CI."""
    path = shutil.which(name)
    if path is None:
        _missing(f"`{name}`", install)
    return path


def require_module(name: str, install: str) -> None:
    """The same for an importable Python module."""
    if importlib.util.find_spec(name) is None:
        _missing(f"the Python module {name}", install)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs_tool(name, install): the test runs `name`; skipped without it, failed under CI",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs_tool"):
        require_tool(*mark.args, **mark.kwargs)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A running broker: `MBS_KAFKA_BOOTSTRAP`, or the local one (started if needed)."""
    settings = Settings()
    if settings.kafka_bootstrap:
        yield settings.kafka_bootstrap
        return
    broker = LocalBroker(settings)
    started = not broker.status().running
    broker.up()
    yield broker.address
    if started and not os.environ.get("MBS_TEST_KEEP_BROKER"):
        broker.down()


@pytest.fixture
def uid() -> str:
    """A short unique suffix for topic, group and unit names on the shared broker."""
    return uuid.uuid4().hex[:10]


def private_topics(uid: str) -> dict[str, str]:
    """MBS_* variables giving a gateway its own journey log, definitions, registry and group."""
    return {
        "MBS_JOURNEYS_TOPIC": f"test.journeys.state.{uid}",
        "MBS_DEFINITIONS_TOPIC": f"test.journeys.defs.{uid}",
        "MBS_CONTRACTS_TOPIC": f"test.contracts.{uid}",
        "MBS_GATEWAY_GROUP": f"test.gateway.{uid}",
    }


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, uid: str) -> Settings:
    """Settings pointing at the session broker, with private topics and home directory."""
    topics = {k.removeprefix("MBS_").lower(): v for k, v in private_topics(uid).items()}
    return Settings(
        kafka_bootstrap=kafka_bootstrap, home=tmp_path_factory.mktemp("mbs-home"), **topics
    )
