"""Every container command of docker-compose.yml is one the installed `mbs` accepts, and the
image installs the wheel rather than the source tree.

The CLI is the one the installed `mbs` console script runs (found through the package's entry
point, as the image's ENTRYPOINT finds it), and each command is parsed by it exactly as a
container start would parse it, arguments included, without running it; a unit it names must
be one the installed ecosystem has. tests/integration/test_wheel.py does the same with a CLI
installed from the built wheel into a fresh virtualenv.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.core import TyperGroup

from ecosystem import ECOSYSTEM

ROOT = Path(__file__).resolve().parents[2]
# Click's usage error, as the Typer in use has it (newer Typers carry their own Click).
USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def installed_cli() -> Any:
    """The command behind the `mbs` console script."""
    [script] = entry_points(group="console_scripts", name="mbs")
    module = importlib.import_module(script.module)
    return typer.main.get_command(module.app)


def parse(cli: Any, args: list[str]) -> Any:
    """The context the command line would run in, arguments parsed and checked, nothing run
    (a bad command line raises the CLI's usage error). Groups are walked by name: a compose
    command puts no option before its sub-command."""
    context, rest = typer.Context(cli, info_name="mbs"), list(args)
    while isinstance(context.command, TyperGroup):
        name, command, rest = context.command.resolve_command(context, rest)
        assert command is not None, args
        assert name is not None, args
        if isinstance(command, TyperGroup):
            context = typer.Context(command, info_name=name, parent=context)
        else:
            context = command.make_context(name, rest, parent=context)
    return context


def compose_commands() -> dict[str, list[str]]:
    """Each service built from the Dockerfile, with its command."""
    services: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return {name: svc["command"] for name, svc in services.items() if "build" in svc}


@pytest.mark.parametrize(("service", "command"), sorted(compose_commands().items()))
def test_each_compose_command_parses_with_the_installed_cli(
    service: str, command: list[str]
) -> None:
    assert isinstance(command, list), f"{service}: an exec-form list, as the ENTRYPOINT takes"
    context = parse(installed_cli(), command)
    if context.command_path == "mbs run unit":
        assert context.params["name"] in ECOSYSTEM.unit_names(), service
    else:
        assert context.command_path == "mbs run gateway", f"{service}: {command}"


def test_every_unit_has_a_container() -> None:
    units = {c[2] for c in compose_commands().values() if c[:2] == ["run", "unit"]}
    assert units == set(ECOSYSTEM.unit_names())


@pytest.mark.parametrize(
    "command",
    [["run", "unit"], ["run", "units", "pricing"], ["run", "gateway", "--no-such-flag"]],
)
def test_a_wrong_command_is_refused(command: list[str]) -> None:
    with pytest.raises(USAGE_ERROR) as refused:
        parse(installed_cli(), command)
    assert getattr(refused.value, "exit_code", None) == 2, "exit 2, as a shell would see it"


def test_the_image_installs_the_built_wheel_and_no_source() -> None:
    stages: list[list[str]] = []
    for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines():
        if line.startswith("FROM "):
            stages.append([])
        if line.strip() and not line.startswith("#"):
            stages[-1].append(" ".join(line.split()))
    assert len(stages) == 2, "a build stage and the image"
    build, image = stages
    assert any("python -m build" in line for line in build), "stage 0 builds sdist and wheel"
    copies = [line for line in image if line.startswith(("COPY", "ADD"))]
    assert copies == ["COPY --from=0 /dist /tmp/dist"], "the image takes only the wheel"
    assert any("pip install /tmp/dist/*.whl" in line for line in image)
