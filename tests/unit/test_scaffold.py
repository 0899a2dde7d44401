"""`mbs new unit`: the scaffolded unit loads, lints clean and passes its own tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mbs import MbsError
from mbs.cli import app
from tests.conftest import require_module

REPO = Path(__file__).resolve().parents[2]
LONGEST = "abcdefghijklmnopqrst"  # the longest name and action the scaffold accepts


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A bare checkout: empty contracts/ and services/ packages and a tests/unit/ folder."""
    for package in ("contracts", "services"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    return tmp_path


def new_unit(*args: str) -> Result:
    return CliRunner().invoke(app, ["new", "unit", *args])


def python(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Python in `root`, whose contracts/ and services/ shadow the repository's."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(REPO)])}
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("loyalty", ["--capability", "loyalty.award_points", "--owner", "team-loyalty"]),
        (LONGEST, ["--capability", f"x.{LONGEST}"]),  # another domain: a second provider
    ],
)
def test_scaffolded_unit_passes_its_own_tests(root: Path, name: str, options: list[str]) -> None:
    result = new_unit(name, *options, "--root", str(root))
    assert result.exit_code == 0, result.output
    created = [
        f"contracts/{name}.py",
        f"services/{name}/__init__.py",
        f"services/{name}/handlers.py",
        f"services/{name}/app.py",
        f"tests/unit/test_{name}.py",
    ]
    for path in created:
        assert (root / path).is_file()
        assert f"created {path}" in result.output
    assert f"mbs run unit {name}" in result.output
    tests = python(
        root,
        *("-m", "pytest", f"tests/unit/test_{name}.py", "-q", "-p", "no:cacheprovider"),
        *("-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"),
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "4 passed" in tests.stdout


@pytest.mark.parametrize("tool", [["check"], ["format", "--check"]])
def test_scaffolded_code_is_ruff_clean_at_the_longest_names(root: Path, tool: list[str]) -> None:
    require_module("ruff", "pip install ruff: a dev dependency")
    assert (
        new_unit(LONGEST, "--capability", f"{LONGEST}.{LONGEST}", "--root", str(root)).exit_code
        == 0
    )
    # The repository's rules, with both roots first-party as they are in a real checkout.
    config = ["--config", str(REPO / "pyproject.toml"), "--config", f"src = ['{root}', '{REPO}']"]
    lint = python(root, "-m", "ruff", *tool, *config, "contracts", "services", "tests")
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_scaffolded_unit_loads_by_name(root: Path) -> None:
    assert new_unit("loyalty", "--root", str(root)).exit_code == 0
    script = (
        "from ecosystem import ECOSYSTEM; unit = ECOSYSTEM.load_unit('loyalty'); "
        "print(unit.name, unit.bindings[0].contract.request_topic)"
    )
    loaded = python(root, "-c", script)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["loyalty", "loyalty.run.v1"]


@pytest.mark.parametrize(
    ("existing", "reported"),
    [
        ("services/loyalty/__init__.py", "services/loyalty"),
        ("services/partners/loyalty/__init__.py", "services/partners/loyalty"),
        ("contracts/loyalty.py", "contracts/loyalty.py"),
        ("tests/unit/test_loyalty.py", "tests/unit/test_loyalty.py"),
    ],
)
def test_refuses_a_name_that_exists_and_writes_nothing(
    root: Path, existing: str, reported: str
) -> None:
    (root / existing).parent.mkdir(parents=True, exist_ok=True)
    (root / existing).write_text("")
    before = sorted(root.rglob("*"))
    result = new_unit("loyalty", "--root", str(root))
    assert isinstance(result.exception, MbsError)
    assert f"({reported} is there)" in str(result.exception)
    assert sorted(root.rglob("*")) == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["Loyalty"], "lower-case letters, digits and '_'"),
        (["gift-cards"], "lower-case letters, digits and '_'"),
        (["2fa"], "starting with a letter"),
        (["class"], "Python identifier"),
        ([LONGEST + "u"], f"at most {len(LONGEST)} characters"),
        (["partners"], "reserved"),
        (["loyalty", "--capability", "award_points"], "expected DOMAIN.ACTION"),
        (["loyalty", "--capability", "loyalty.import"], "a Python identifier"),
        (["loyalty", "--owner", 'team"loyalty'], "owner 'team\"loyalty' is not usable"),
    ],
)
def test_refuses_unusable_names(root: Path, args: list[str], expected: str) -> None:
    result = new_unit(*args, "--root", str(root))
    assert isinstance(result.exception, MbsError)
    assert expected in str(result.exception)
    assert not (root / "contracts" / f"{args[0]}.py").exists()


def test_refuses_a_root_without_the_packages(tmp_path: Path) -> None:
    result = new_unit("loyalty", "--root", str(tmp_path))
    assert isinstance(result.exception, MbsError)
    assert "no contracts/ and services/ package" in str(result.exception)
    assert "run `mbs new unit` from the repository root or pass --root DIR" in str(result.exception)


def test_command_line_says_what_to_do_outside_a_checkout(tmp_path: Path) -> None:
    run = python(tmp_path, "-m", "mbs", "new", "unit", "loyalty")
    assert run.returncode == 2
    assert "error:" in run.stderr
    assert "from the repository root or pass --root DIR" in run.stderr
    assert list(tmp_path.iterdir()) == []
