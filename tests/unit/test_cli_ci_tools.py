"""CI cannot pass by skipping (issue 17): a test whose tool is missing is skipped on a
developer's machine and fails under CI=true."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import in_ci, require_module, require_tool

MISSING = "mbs-no-such-tool-17"
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("value", ["true", "1", "TRUE", "yes"])
def test_ci_values_that_mean_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci()


def test_a_missing_tool_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install it"):
        require_tool(MISSING, "apt-get install it")
    with pytest.raises(pytest.skip.Exception):
        require_module("mbs_no_such_module_17", "pip install it")


def test_a_missing_tool_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must have it"):
        require_tool(MISSING, "apt-get install it")
    with pytest.raises(pytest.fail.Exception):
        require_module("mbs_no_such_module_17", "pip install it")


def test_a_present_tool_is_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert require_tool("sh", "it is POSIX").endswith("/sh")
    require_module("json", "it is the standard library")


def test_no_test_skips_on_a_missing_tool_by_itself() -> None:
    """Every check for a tool goes through require_tool, require_module or needs_tool."""
    offenders = []
    for path in (ROOT / "tests").rglob("*.py"):
        if path.name in ("conftest.py", Path(__file__).name):
            continue
        text = path.read_text()
        skips = "pytest.skip(" in text or "skipif(" in text
        if "importorskip(" in text or ("shutil.which(" in text and skips):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == [], f"use tests.conftest.require_tool or require_module: {offenders}"


def test_ci_installs_what_the_tests_need() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    for tool in ("kcat", "docker-compose", "promtool", "prometheus"):
        assert f"command -v {tool} " in script, tool
    assert 'export CI="${CI:-true}"' in script
