"""The command line's help is whole and in order (issue 17): no help text eaten by Rich
markup, every option explained, `-h` and `--version`, groups in the order a user needs them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mbs.cli import app
from mbs.cli.commands import version

# What Rich reads as a markup tag, and so prints as nothing: "[env: X]", "[default: Y]".
MARKUP_TAG = re.compile(r"(?<!\\)\[[a-z#/@][^\[\]]*\]")
runner = CliRunner()


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    command = typer.main.get_command(app) if group is None else group
    yield path, command
    for name, child in getattr(command, "commands", {}).items():
        yield from _commands(child, (*path, name))


COMMANDS = list(_commands(None))


def _flat(text: str) -> str:
    """Help as one line of words, box drawing and wrapping removed."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_no_help_text_is_read_as_markup(path: tuple[str, ...], command: Any) -> None:
    texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
    eaten = [t for t in texts if MARKUP_TAG.search(t)]
    assert eaten == [], f"`mbs {' '.join(path)}`: Rich would swallow the brackets in {eaten}"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_option_and_command_says_what_it_is_for(path: tuple[str, ...], command: Any) -> None:
    assert command.help, f"`mbs {' '.join(path)}` has no help"
    silent = [p.name for p in command.params if not getattr(p, "help", None) and p.name != "help"]
    assert silent == [], f"`mbs {' '.join(path)}`: options without help: {silent}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["broker", "up"], "Broker port, 1024-65534 (env MBS_BROKER_PORT, default 9092)"),
        (["broker", "status"], "(env MBS_BROKER_PORT, default 9092)"),
        (["new", "unit"], "DOMAIN.ACTION it serves (default: NAME.run)"),
        (["new", "unit"], "Owning team (default: team-NAME)"),
        (["new", "unit"], "Repository root (default: the current directory)"),
        (["scorecard"], "Gateway URL (env MBS_GATEWAY_URL, default http://127.0.0.1:8080)"),
        (["partners", "add"], "(default: contracts/partners/NAME.json)"),
        (["run", "gateway"], "Address to listen on (env MBS_GATEWAY_HOST, default 127.0.0.1)"),
        (["run", "gateway"], "HTTP port (env MBS_GATEWAY_PORT, default 8080)"),
    ],
)
def test_rendered_help_keeps_env_and_defaults(args: list[str], expected: str) -> None:
    shown = runner.invoke(app, [*args, "--help"])  # 80 columns: nothing may be cut short
    assert shown.exit_code == 0, shown.output
    assert expected in _flat(shown.output)


@pytest.mark.parametrize("args", [[], ["broker"], ["broker", "up"], ["contracts", "diff"]])
def test_dash_h_is_help(args: list[str]) -> None:
    shown = runner.invoke(app, [*args, "-h"])
    assert shown.exit_code == 0, shown.output
    assert "Usage:" in shown.output


def test_version() -> None:
    shown = runner.invoke(app, ["--version"])
    assert shown.exit_code == 0
    assert shown.output.strip() == version()
    assert re.fullmatch(r"mbs \S+ \(Apache Kafka 3\.9\.1\)", version())


def test_help_groups_commands_in_the_order_a_user_needs_them() -> None:
    shown = _flat(runner.invoke(app, ["--help"]).output)
    assert "2 usage" in shown
    assert "3 platform error" in shown
    panels = ("Run demo", "Broker broker", "Contracts contracts", "Partners partners")
    found = [shown.find(f" {panel} ") for panel in (*panels, "Reports scorecard")]
    assert -1 not in found, shown
    assert found == sorted(found), shown
    listed = shown[found[0] :]
    entries = ("demo Start", "run Run", "units List", "broker A", "scorecard Each", "ledger")
    commands = [listed.index(f" {entry} ") for entry in entries]
    assert commands == sorted(commands), listed
