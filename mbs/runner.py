"""Runs one unit as its own process: topics and contracts ensured, handlers subscribed, an ops
port with /healthz, /readyz and /metrics, and SIGTERM finishing in-flight work before exit."""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil

import uvicorn
from faststream.asgi import AsgiFastStream, AsgiResponse, get, make_ping_asgi
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from prometheus_client import make_asgi_app

import services
from mbs import tracing
from mbs.errors import MbsError
from mbs.kafka import broker_security
from mbs.registry import Registry
from mbs.settings import Settings
from mbs.state import UnitStore
from mbs.topics import ensure_topics
from mbs.unit import Unit

log = logging.getLogger("mbs.runner")
GRACEFUL_TIMEOUT_S = 30


def unit_names() -> list[str]:
    """Every unit package under services/ (partners' included)."""
    names = [m.name for m in pkgutil.iter_modules(services.__path__) if m.name != "partners"]
    try:
        partners = importlib.import_module("services.partners")
    except ModuleNotFoundError:
        return sorted(names)
    return sorted(names + [m.name for m in pkgutil.iter_modules(partners.__path__)])


def load_unit(name: str, store: UnitStore | None = None) -> Unit:
    """Import `services.<name>.app` (or a partner's) and build its unit; a unit that keeps
    state is built with `store` (a temporary one when none is given)."""
    for module in (f"services.{name}.app", f"services.partners.{name}.app"):
        try:
            app = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module.startswith(exc.name):
                continue
            raise
        keeps_state = "store" in inspect.signature(app.build).parameters
        unit: Unit = app.build(store=store) if keeps_state and store else app.build()
        return unit
    raise MbsError(f"no unit named {name!r}; known units: {', '.join(unit_names())}")


def open_unit(name: str, settings: Settings) -> Unit:
    """The unit built on the store every instance of it on this host shares."""
    return load_unit(name, UnitStore.for_unit(name, settings))


def build_broker(unit: Unit, settings: Settings) -> tuple[KafkaBroker, UnitStore]:
    """A FastStream broker with the unit's handlers subscribed, and the unit's store (opened
    from settings unless the unit was built with one)."""
    provider = tracing.setup_tracing(f"mbs-unit-{unit.name}")
    middlewares = [] if provider is None else [KafkaTelemetryMiddleware(tracer_provider=provider)]
    broker = KafkaBroker(
        settings.bootstrap,
        middlewares=middlewares,
        security=broker_security(),
        client_id=f"mbs-unit-{unit.name}",
        logger=log,
        log_level=logging.DEBUG,
        graceful_timeout=GRACEFUL_TIMEOUT_S,
    )
    store = unit.store or UnitStore.for_unit(unit.name, settings)
    unit.concurrency = settings.unit_concurrency
    unit.attach(broker, store)
    return broker, store


@get
async def _alive(scope: object) -> AsgiResponse:
    return AsgiResponse(b"ok", 200)


async def serve_unit(unit: Unit, settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM, then finish in-flight work, commit, and stop."""
    await ensure_topics(settings.bootstrap, unit.topics)
    if not settings.kafka_username:  # in secure mode onboarding registers, units may not
        registry = Registry(
            settings.bootstrap, client=f"unit:{unit.name}", topic=settings.contracts_topic
        )
        await registry.register(binding.contract.as_contract() for binding in unit.bindings)
    broker, store = build_broker(unit, settings)
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
    port = (
        settings.unit_port if settings.unit_port is not None else services.PORTS.get(unit.name, 0)
    )

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
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT_S,
    )
    try:
        await uvicorn.Server(config).serve()
    finally:
        store.close()
        tracing.shutdown_tracing()
