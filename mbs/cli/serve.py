"""`mbs run unit|gateway`: one process of the ecosystem in the foreground. What can be
checked before touching Kafka is checked first, so a process that cannot serve never joins a
consumer group (and never takes partitions from one that can)."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Annotated

import typer

from mbs.cli.exits import Usage
from mbs.cli.logs import configure_logging
from mbs.errors import BrokerError, MbsError
from mbs.kafka.connection import Connection
from mbs.settings import Settings, get_settings
from mbs.unit.ecosystem import load_ecosystem

app = typer.Typer(help="Run one process of the ecosystem in the foreground.", no_args_is_help=True)
log = logging.getLogger("mbs.cli")
PROBE_TIMEOUT_MS = 5000


@app.command("unit")
def run_unit(name: Annotated[str, typer.Argument(help="Unit name, e.g. pricing.")]) -> None:
    """Serve one unit's capabilities until SIGINT or SIGTERM."""
    from mbs.unit.hosting import open_unit, serve_unit

    ecosystem = load_ecosystem()
    if name not in ecosystem.unit_names():
        raise Usage(f"no unit named {name!r}; known units: {', '.join(ecosystem.unit_names())}")
    configure_logging()
    settings = get_settings()
    unit = open_unit(ecosystem, name, settings)
    asyncio.run(serve_unit(unit, settings, port=ecosystem.ports.get(name, 0)))


@app.command("gateway")
def run_gateway(
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to listen on (env MBS_GATEWAY_HOST, default 127.0.0.1).",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="HTTP port (env MBS_GATEWAY_PORT, default 8080).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the gateway's HTTP API until SIGINT or SIGTERM. The port is bound and Kafka
    reached before anything joins a consumer group."""
    import uvicorn

    from mbs.telemetry import tracing

    configure_logging()
    settings = get_settings()
    host, port = host or settings.gateway_host, port or settings.gateway_port
    listener = bind(host, port)
    try:
        asyncio.run(kafka_reachable(settings))
        tracing.setup_tracing("mbs-gateway")
        config = uvicorn.Config(
            load_ecosystem().gateway_app(settings),
            host=host,
            port=port,
            log_level="warning",
            log_config=None,  # uvicorn's loggers go through ours (plain, JSON or Rich)
        )
        server = uvicorn.Server(config)
        log.info("gateway listening on http://%s:%s", host, port)
        server.run(sockets=[listener])
    finally:
        listener.close()
    if not server.started:
        raise MbsError("the gateway did not start; its log above says why")


def bind(host: str, port: int) -> socket.socket:
    """Listen on host:port now, or say who is in the way (before anything touches Kafka)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise Usage(f"cannot listen on {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise MbsError(
            f"cannot listen on {host}:{port} ({exc.strerror}): another process (another "
            "gateway?) has it. Pick another with --port or MBS_GATEWAY_PORT."
        ) from None
    return sock


async def kafka_reachable(settings: Settings) -> None:
    """One bootstrap round trip, so an unreachable cluster is one line, not a traceback."""
    from aiokafka import AIOKafkaClient
    from aiokafka.errors import KafkaConnectionError, KafkaError

    connection = Connection.from_settings(settings)
    client = AIOKafkaClient(**connection.options(), request_timeout_ms=PROBE_TIMEOUT_MS)
    try:
        await client.bootstrap()
    except KafkaError as exc:
        # "unable to bootstrap" repeats the address; anything else (SASL, TLS) is the cause
        why = "" if isinstance(exc, KafkaConnectionError) else f" ({exc})"
        raise BrokerError(
            f"cannot reach Kafka at {connection.bootstrap}{why}: start it with "
            "`mbs broker up` or set MBS_KAFKA_BOOTSTRAP"
        ) from None
    finally:
        await client.close()
