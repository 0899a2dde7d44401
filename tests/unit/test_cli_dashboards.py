"""`python -m mbs.dashboards` has a real argument parser (issue 17): --help writes nothing,
no directory is refused, and --check compares without writing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def dashboards(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mbs.dashboards", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
        timeout=120,
        check=False,
    )


def test_help_is_help_and_writes_nothing(tmp_path: Path) -> None:
    shown = dashboards("--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "usage: python -m mbs.dashboards" in shown.stdout
    assert "--check" in shown.stdout
    assert list(tmp_path.iterdir()) == []


def test_no_directory_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    shown = dashboards(cwd=tmp_path)
    assert shown.returncode == 2
    assert "directory" in shown.stderr
    assert list(tmp_path.iterdir()) == []


def test_writes_where_told_and_check_finds_a_stale_file(tmp_path: Path) -> None:
    written = dashboards("out", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    rules = tmp_path / "out" / "prometheus" / "alerts.rules.yml"
    assert str(Path("out") / "prometheus" / "alerts.rules.yml") in written.stdout
    assert dashboards("out", "--check", cwd=tmp_path).returncode == 0
    rules.write_text(rules.read_text() + "# edited by hand\n")
    stale = dashboards("--check", "out", cwd=tmp_path)
    assert stale.returncode == 1
    assert "alerts.rules.yml" in stale.stderr
    assert rules.read_text().endswith("# edited by hand\n"), "--check writes nothing"
