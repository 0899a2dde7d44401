"""`mbs deploy k8s DIR` writes what the generator renders and leaves overlays alone;
`--check` writes nothing and exits 1 naming each file that differs."""

from __future__ import annotations

from pathlib import Path

import pytest

from mbs.cli import main
from mbs.dashboards.k8s import rendered


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as stopped:
        code = stopped.code if isinstance(stopped.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_writes_the_base_and_check_finds_what_differs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "k8s"
    overlay = target / "overlays" / "dev" / "kustomization.yaml"
    overlay.parent.mkdir(parents=True)
    overlay.write_text("# kept by hand\n")

    code, out, _ = run(capsys, "deploy", "k8s", str(target))
    assert code == 0
    expected = rendered()
    assert sorted(out.split()) == sorted(str(target / relative) for relative in expected)
    for relative, text in expected.items():
        assert (target / relative).read_text() == text
    assert overlay.read_text() == "# kept by hand\n"

    code, _, said = run(capsys, "deploy", "k8s", str(target), "--check")
    assert code == 0
    assert "up to date" in said

    users = target / "base" / "users.yaml"
    users.write_text(users.read_text() + "# edited by hand\n")
    (target / "base" / "kafka.yaml").unlink()
    code, out, said = run(capsys, "deploy", "k8s", "--check", str(target))
    assert code == 1
    assert out == ""
    assert "base/users.yaml" in said
    assert "base/kafka.yaml" in said
    assert users.read_text().endswith("# edited by hand\n"), "--check writes nothing"
    assert not (target / "base" / "kafka.yaml").exists()
