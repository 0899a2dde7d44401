"""What several commands share: the progress console, the broker port and mode options, and
settings checked the way options are."""

from __future__ import annotations

from typing import Annotated

import typer

from mbs.broker import MAX_PORT, MIN_PORT, LocalBroker
from mbs.cli import console as mbs_console
from mbs.cli.exits import Usage
from mbs.settings import Settings, get_settings

console = mbs_console.stderr()

SecureOption = Annotated[
    bool, typer.Option("--secure", help="SASL/SCRAM with ACLs: one principal per unit.")
]
# Help texts never hold "[word ...]": Rich would read it as markup and print nothing.
PortOption = Annotated[
    int | None,
    typer.Option(
        "--port",
        metavar="PORT",
        min=MIN_PORT,
        max=MAX_PORT,
        show_default=False,
        help=f"Broker port, {MIN_PORT}-{MAX_PORT} (env MBS_BROKER_PORT, default 9092); the "
        "controller takes port + 1.",
    ),
]
ModeOption = Annotated[
    bool | None,
    typer.Option(
        "--secure/--plain",
        show_default=False,
        help="The secure or the plain broker of the port (default: whichever runs there).",
    ),
]


def say(message: str) -> None:
    """One line of progress on stderr."""
    console.print(f"[dim]mbs[/] {message}")


def settings_for(port: int | None = None) -> Settings:
    """The process settings, on `port` if given; a port from MBS_BROKER_PORT is checked
    against the same range as --port."""
    settings = get_settings()
    if port is not None:
        return settings.model_copy(update={"broker_port": port})
    if not MIN_PORT <= settings.broker_port <= MAX_PORT:
        raise Usage(
            f"MBS_BROKER_PORT={settings.broker_port}: the local broker's port must be "
            f"{MIN_PORT}-{MAX_PORT} (below {MIN_PORT} needs root; the controller takes port + 1)"
        )
    return settings


def local_broker(port: int | None, secure: bool | None = False) -> LocalBroker | None:
    """The local broker on that port (`secure=None`: whichever mode runs there), or None
    when MBS_KAFKA_BOOTSTRAP names another cluster."""
    settings = settings_for(port)
    if settings.kafka_bootstrap:
        say(f"MBS_KAFKA_BOOTSTRAP is set: using the existing cluster at {settings.bootstrap}")
        return None
    return LocalBroker.on_port(settings, secure)
