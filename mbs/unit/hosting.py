"""Runs one unit as its own process: topics and contracts ensured, handlers subscribed, an ops
port with /healthz, /readyz and /metrics, and SIGTERM finishing in-flight work before exit."""

from __future__ import annotations

import logging

import uvicorn
from faststream.asgi import AsgiFastStream, AsgiResponse, get, make_ping_asgi
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from prometheus_client import make_asgi_app

from mbs.contract.registry import Registry
from mbs.kafka.admin import ensure_topics
from mbs.kafka.connection import Connection
from mbs.settings import Settings
from mbs.telemetry import tracing
from mbs.unit.api import Unit
from mbs.unit.ecosystem import Ecosystem
from mbs.unit.state import UnitStore

log = logging.getLogger("mbs.runner")
GRACEFUL_TIMEOUT_S = 30


def open_unit(ecosystem: Ecosystem, name: str, settings: Settings) -> Unit:
    """The unit built on the store every instance of it on this host shares."""
    return ecosystem.load_unit(name, UnitStore.for_unit(name, settings))


def build_broker(
    unit: Unit, settings: Settings, connection: Connection | None = None
) -> tuple[KafkaBroker, UnitStore]:
    """A FastStream broker with the unit's handlers subscribed, and the unit's store (opened
    from settings unless the unit was built with one)."""
    provider = tracing.setup_tracing(f"mbs-unit-{unit.name}")
    middlewares = [] if provider is None else [KafkaTelemetryMiddleware(tracer_provider=provider)]
    connection = connection or Connection.from_settings(settings)
    broker = KafkaBroker(
        connection.servers(),  # a list: FastStream takes one string as one host
        middlewares=middlewares,
        security=connection.broker_security(),
        client_id=f"mbs-unit-{unit.name}",
        logger=log,
        log_level=logging.DEBUG,
        graceful_timeout=GRACEFUL_TIMEOUT_S,
        acks="all",  # a reply or event survives the loss of one broker (RF 3, min.insync 2)
        enable_idempotence=True,  # and a retried send is not written twice
    )
    store = unit.store or UnitStore.for_unit(unit.name, settings)
    unit.concurrency = settings.unit_concurrency
    unit.instance_id = settings.instance_id
    unit.attach(broker, store)
    return broker, store


@get
async def _alive(scope: object) -> AsgiResponse:
    return AsgiResponse(b"ok", 200)


async def serve_unit(unit: Unit, settings: Settings, *, port: int = 0) -> None:
    """Serve until SIGINT or SIGTERM, then finish in-flight work, commit, and stop; the ops
    port is MBS_UNIT_PORT if set, else `port` (0: any free port)."""
    connection = Connection.from_settings(settings)
    await ensure_topics(connection, unit.topics)
    if not settings.kafka_username:  # in secure mode onboarding registers, units may not
        registry = Registry(connection, client=f"unit:{unit.name}", topic=settings.contracts_topic)
        await registry.register(binding.contract.as_contract() for binding in unit.bindings)
    broker, store = build_broker(unit, settings, connection)
    remembered = store.remembered()
    app = AsgiFastStream(
        broker,
        logger=log,
        asgi_routes=[
            ("/healthz", _alive),
            ("/readyz", make_ping_asgi(broker, timeout=5.0)),
            ("/metrics", make_asgi_app()),
        ],
    )
    port = settings.unit_port if settings.unit_port is not None else port

    @app.after_startup
    async def _ready() -> None:
        caps = ", ".join(b.contract.capability for b in unit.bindings)
        log.info(
            "unit %s serving %s on %s; ops on %s:%s; state in %s (%d replies remembered)",
            unit.name,
            caps,
            settings.bootstrap,
            settings.unit_host,
            port,
            store.path or "memory",
            remembered,
        )

    config = uvicorn.Config(
        app,
        host=settings.unit_host,
        port=port,
        log_level="warning",
        log_config=None,  # uvicorn logs through the process's handler (mbs.cli.logs)
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT_S,
    )
    try:
        await uvicorn.Server(config).serve()
    finally:
        store.close()
        tracing.shutdown_tracing()
