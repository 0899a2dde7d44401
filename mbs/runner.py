"""Runs one unit as its own process: topics ensured, handlers subscribed, SIGTERM honoured."""

from __future__ import annotations

import importlib
import logging
import pkgutil

from faststream import FastStream
from faststream.kafka import KafkaBroker

import services
from mbs.errors import MbsError
from mbs.settings import Settings
from mbs.topics import ensure_topics
from mbs.unit import Unit

log = logging.getLogger("mbs.runner")


def unit_names() -> list[str]:
    """Every unit package under services/ (partners' included)."""
    names = [m.name for m in pkgutil.iter_modules(services.__path__) if m.name != "partners"]
    try:
        partners = importlib.import_module("services.partners")
    except ModuleNotFoundError:
        return sorted(names)
    return sorted(names + [m.name for m in pkgutil.iter_modules(partners.__path__)])


def load_unit(name: str) -> Unit:
    """Import `services.<name>.app` (or a partner's) and build its unit."""
    for module in (f"services.{name}.app", f"services.partners.{name}.app"):
        try:
            app = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module.startswith(exc.name):
                continue
            raise
        unit: Unit = app.build()
        return unit
    raise MbsError(f"no unit named {name!r}; known units: {', '.join(unit_names())}")


def build_broker(unit: Unit, settings: Settings) -> KafkaBroker:
    """A FastStream broker with the unit's handlers subscribed."""
    broker = KafkaBroker(
        settings.bootstrap, client_id=f"mbs-unit-{unit.name}", logger=log, log_level=logging.DEBUG
    )
    unit.attach(broker)
    return broker


async def serve_unit(unit: Unit, settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM, then finish in-flight work and stop."""
    await ensure_topics(settings.bootstrap, unit.topics)
    app = FastStream(build_broker(unit, settings), logger=log)

    @app.after_startup
    async def _ready() -> None:
        caps = ", ".join(b.contract.capability for b in unit.bindings)
        log.info("unit %s serving %s on %s", unit.name, caps, settings.bootstrap)

    await app.run(log_level=logging.INFO)
