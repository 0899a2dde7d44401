"""The release installs and runs outside the checkout: the sdist is built, the wheel is built
from it (as PyPI users and the Dockerfile get it), installed into a fresh virtualenv with its
dependencies, and then, from a folder that is not the checkout, `mbs units`, `mbs contracts
export` and `mbs run unit fastship` (a partner unit, built from a contract that is package
data) work, and every command of docker-compose.yml parses with that installed CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecosystem import ECOSYSTEM
from mbs.testing import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "ecosystem.py", "mbs", "contracts", "services", "gateway")
WHEELHOUSE = Path(os.environ.get("MBS_CACHE_DIR") or Path.home() / ".cache" / "mbs") / "wheelhouse"
DATA = ("contracts/partners/fastship.json", "gateway/journeys/order-to-delivery.yaml")
# Run by the installed interpreter: the compose commands, parsed by the installed CLI as a
# container start would parse them (tests/unit/test_compose_cli.py, without the checkout).
PARSE_COMPOSE = """
import importlib, json, sys
from importlib.metadata import entry_points
import typer
from typer.core import TyperGroup
from ecosystem import ECOSYSTEM
[script] = entry_points(group="console_scripts", name="mbs")
cli = typer.main.get_command(importlib.import_module(script.module).app)
for args in json.load(sys.stdin):
    context, rest = typer.Context(cli, info_name="mbs"), list(args)
    while isinstance(context.command, TyperGroup):
        name, command, rest = context.command.resolve_command(context, rest)
        if isinstance(command, TyperGroup):
            context = typer.Context(command, info_name=name, parent=context)
        else:
            context = command.make_context(name, rest, parent=context)
    unit = context.params.get("name")
    assert unit is None or unit in ECOSYSTEM.unit_names(), unit
    print(context.command_path, unit or "")
"""


def run(args: list[str], cwd: Path, env: dict[str, str], **kwargs: Any) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False, **kwargs
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def install(wheel: Path, venv: Path, env: dict[str, str]) -> None:
    """pip install the wheel and its dependencies into `venv`. pip keeps no cache here, so
    the dependencies are downloaded once into a wheelhouse kept with the Kafka jars, and
    installed from there without an index; a dependency it lacks (a new one) is fetched."""
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    offline = [*pip, "install", "--quiet", "--no-index", "--find-links", str(WHEELHOUSE)]
    done = subprocess.run([*offline, str(wheel)], env=env, capture_output=True, check=False)
    if done.returncode != 0:
        fetch = [*pip, "download", "--quiet", "--dest", str(WHEELHOUSE), str(wheel)]
        run(fetch, wheel.parent, env)
        (WHEELHOUSE / wheel.name).unlink(missing_ok=True)  # only its dependencies are kept
        run([*offline, str(wheel)], wheel.parent, env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv outside the checkout with the wheel built from the sdist."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a copy: building writes egg-info and build/ into its tree
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run([sys.executable, "-m", "build", "--outdir", str(work / "dist"), str(source)], work, env)
    [sdist], [wheel] = (list((work / "dist").glob(pattern)) for pattern in ("*.tar.gz", "*.whl"))
    with tarfile.open(sdist) as archive:
        packed = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    with zipfile.ZipFile(wheel) as archive:
        assert set(DATA) <= packed & set(archive.namelist()), "package data in sdist and wheel"
    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work, env)
    install(wheel, venv, env)
    return venv


@pytest.fixture
def elsewhere(tmp_path: Path, installed: Path) -> tuple[Path, dict[str, str]]:
    """A working folder outside the checkout, and an environment with only the venv's `mbs`
    and no MBS_* setting of this test session."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("MBS_", "PYTHON", "VIRTUAL"))}
    path = f"{installed / 'bin'}{os.pathsep}{keep.get('PATH', '')}"
    env = {**keep, "PATH": path, "MBS_HOME": str(tmp_path / "home")}
    return tmp_path, env


def test_the_wheel_holds_the_package_data_and_runs_outside_the_checkout(
    installed: Path, elsewhere: tuple[Path, dict[str, str]]
) -> None:
    cwd, env = elsewhere
    mbs = str(installed / "bin" / "mbs")
    where = run(
        [str(installed / "bin" / "python"), "-c", "import mbs; print(mbs.__file__)"], cwd, env
    )
    assert Path(where.strip()).is_relative_to(installed), f"mbs imported from {where}"
    rows = json.loads(run([mbs, "units", "--output", "json"], cwd, env))
    assert {r["unit"] for r in rows} == set(ECOSYSTEM.unit_names())
    assert {"fastship", "paylater"} <= {r["unit"] for r in rows}, "partners: package data"
    run([mbs, "contracts", "export", str(cwd / "published")], cwd, env)
    exported = {p.stem for p in (cwd / "published" / "asyncapi").glob("*.yaml")}
    assert exported == set(ECOSYSTEM.unit_names())
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    commands = [svc["command"] for svc in services.values() if "build" in svc]
    parsed = run(
        [str(installed / "bin" / "python"), "-c", PARSE_COMPOSE],
        cwd,
        env,
        input=json.dumps(commands),
    )
    assert len(parsed.splitlines()) == len(commands), parsed


def test_the_installed_cli_serves_a_partner_unit_until_sigterm(
    installed: Path, elsewhere: tuple[Path, dict[str, str]], kafka_bootstrap: str, uid: str
) -> None:
    """fastship is built from contracts/partners/fastship.json, read from the installed
    package. Its registration goes to a topic of this test's own."""
    cwd, env = elsewhere
    port = free_port()
    env = {
        **env,
        "MBS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "MBS_UNIT_PORT": str(port),
        "MBS_UNIT_STATE_DIR": str(cwd / "units"),
        "MBS_CONTRACTS_TOPIC": f"test.contracts.{uid}",
    }
    log = (cwd / "fastship.log").open("w")
    unit = subprocess.Popen(
        [str(installed / "bin" / "mbs"), "run", "unit", "fastship"],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not _ready(f"http://127.0.0.1:{port}/readyz"):
            assert unit.poll() is None, (cwd / "fastship.log").read_text()
            assert time.monotonic() < deadline, (cwd / "fastship.log").read_text()
            time.sleep(0.3)
    finally:
        unit.send_signal(signal.SIGTERM)
        code = unit.wait(60)
        log.close()
    assert code in (0, -signal.SIGTERM), (cwd / "fastship.log").read_text()
    assert (cwd / "units" / "fastship.sqlite3").is_file(), "its state, where it was told"


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(200 <= response.status < 300)  # a unit says 204
    except OSError:
        return False
