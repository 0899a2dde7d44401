"""Everything one gateway process holds, wired in one place and started in order."""

from __future__ import annotations

import logging

import contracts
from gateway.catalog import Catalog
from gateway.definitions import JOURNEYS_DIR, load_all
from gateway.defs import DefinitionStore
from gateway.engine import JourneyEngine
from gateway.executor import Executor
from gateway.runlog import RunLog
from mbs import headers as h
from mbs.registry import Registry
from mbs.rpc import Requester
from mbs.settings import Settings

log = logging.getLogger("mbs.gateway")


class Gateway:
    """Catalog, definitions, journey log, engine and executor of one gateway instance."""

    def __init__(self, settings: Settings, catalog: Catalog | None = None) -> None:
        self.settings = settings
        self.catalog = catalog or Catalog(contracts.all_contracts())
        self.registry = Registry(
            settings.bootstrap, client="gateway", topic=settings.contracts_topic
        )
        self.definitions = DefinitionStore(settings.bootstrap, settings.definitions_topic)
        self.requester = Requester(settings.bootstrap, caller="gateway")
        self.runlog = RunLog(settings.bootstrap, settings.journeys_topic, settings.gateway_group)
        self.engine = JourneyEngine(
            self.requester,
            self.catalog,
            self.runlog.save,
            default_timeout_s=settings.request_timeout,
        )
        self.executor = Executor(self.engine, self.runlog, self.definitions.versions)
        self.ready = False

    async def start(self) -> None:
        view = await self.registry.sync()
        self.catalog.update(view.current())
        shipped = load_all(self.catalog, self.settings.journeys_dir or JOURNEYS_DIR)
        await self.definitions.start()
        await self.definitions.seed(list(shipped.values()))
        units = {c.unit for c in self.catalog.contracts()}
        await self.requester.start(h.reply_topic(unit) for unit in units)
        await self.runlog.start(
            self.executor.on_record, self.executor.on_assigned, self.executor.on_revoked
        )
        self.ready = True
        log.info("gateway ready: journeys %s", ", ".join(self.definitions.names()))

    async def stop(self) -> None:
        self.ready = False
        await self.executor.stop()
        await self.engine.stop()
        await self.runlog.stop()
        await self.requester.stop()
        await self.definitions.stop()
