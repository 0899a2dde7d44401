"""`mbs contracts diff|check` on what partners actually send (issue 17): lists of contracts,
empty lists and files that are not JSON; a bad file is refused before any broker is asked."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mbs.testing import free_port

PARTNER = Path("contracts/partners/fastship.json")


def mbs(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command line, with a Kafka address nobody listens on."""
    env = {**os.environ, "MBS_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    return subprocess.run(
        [sys.executable, "-m", "mbs", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def partner_file(tmp_path: Path, name: str, contracts: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(contracts))
    return path


@pytest.fixture
def fastship() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads(PARTNER.read_text())
    return loaded


def test_diff_of_a_partner_list_pairs_its_contracts(
    tmp_path: Path, fastship: list[dict[str, Any]]
) -> None:
    newer = copy.deepcopy(fastship)
    newer[0]["version"] = "1.1.0"
    newer[0]["description"] = "Faster."
    shown = mbs("contracts", "diff", str(PARTNER), str(partner_file(tmp_path, "new.json", newer)))
    assert shown.returncode == 0, shown.stderr
    assert "shipping.book@1.0.0/fastship -> shipping.book@1.1.0/fastship" in shown.stdout
    assert "description, version" in shown.stdout
    assert "shipping.cancel@1.0.0/fastship (fastship): unchanged" in shown.stdout
    assert "1 changed, 0 added, 0 removed: compatible" in shown.stdout


def test_diff_names_every_break_and_every_removed_contract(
    tmp_path: Path, fastship: list[dict[str, Any]]
) -> None:
    newer = copy.deepcopy(fastship[:1])
    newer[0]["version"] = "1.1.0"
    newer[0]["request"]["required"].append("country")
    shown = mbs(
        "contracts",
        "diff",
        str(PARTNER),
        str(partner_file(tmp_path, "new.json", newer)),
        "-o",
        "json",
    )
    assert shown.returncode == 1, shown.stderr
    report = json.loads(shown.stdout)
    assert report["compatible"] is False
    [changed] = report["changed"]
    assert any("country" in r["reason"] for r in changed["reasons"]), changed
    assert report["removed"] == [{"unit": "fastship", "key": "shipping.cancel@1.0.0/fastship"}]


def test_diff_of_a_single_contract_still_works(
    tmp_path: Path, fastship: list[dict[str, Any]]
) -> None:
    old = partner_file(tmp_path, "old.json", fastship[0])
    new = partner_file(tmp_path, "new.json", {**fastship[0], "version": "1.0.1"})
    shown = mbs("contracts", "diff", str(old), str(new))
    assert shown.returncode == 0, shown.stderr
    assert "1 changed" in shown.stdout


@pytest.mark.parametrize("command", ["diff", "check"])
def test_an_empty_list_is_refused_as_usage(tmp_path: Path, command: str) -> None:
    empty = partner_file(tmp_path, "empty.json", [])
    args = [str(empty), str(PARTNER)] if command == "diff" else [str(empty)]
    shown = mbs("contracts", command, *args)
    assert shown.returncode == 2, shown.stderr
    assert "holds no contract" in shown.stderr
    assert "Traceback" not in shown.stderr


def test_check_refuses_a_bad_file_before_it_asks_the_broker(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("not json at all")
    shown = mbs("contracts", "check", str(bad))
    assert shown.returncode == 2, shown.stderr
    assert "not JSON" in shown.stderr
    assert "Kafka" not in shown.stderr


def test_check_without_a_broker_is_a_platform_error() -> None:
    shown = mbs("contracts", "check", str(PARTNER))
    assert shown.returncode == 3, shown.stderr
    assert "cannot reach Kafka" in shown.stderr
    assert "Traceback" not in shown.stderr
