"""Everything one gateway process holds, wired in one place and started in order."""

from __future__ import annotations

import asyncio
import logging

import contracts
from gateway.catalog import Catalog
from gateway.definitions import JOURNEYS_DIR, load_all
from gateway.defs import DefinitionStore
from gateway.engine import JourneyEngine, UndoPolicy
from gateway.executor import Executor
from gateway.runlog import RunLog
from gateway.transport import KafkaTransport
from mbs import headers as h
from mbs.conformance import certifications
from mbs.registry import Registry
from mbs.rpc import Requester
from mbs.settings import Settings

log = logging.getLogger("mbs.gateway")
CERTIFICATION_REFRESH_S = 3.0


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
            KafkaTransport(self.requester),
            self.catalog,
            self.runlog.save,
            default_timeout_s=settings.request_timeout,
            undo_policy=UndoPolicy(attempts=settings.undo_attempts),
        )
        self.executor = Executor(self.engine, self.runlog, self.definitions.versions)
        self.ready = False
        self._gate: asyncio.Task[None] | None = None

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
        if self.settings.require_certification:
            await self._refresh_certifications()
            self._gate = asyncio.create_task(self._follow_certifications(), name="certifications")
        self.ready = True
        log.info("gateway ready: journeys %s", ", ".join(self.definitions.names()))

    async def _refresh_certifications(self) -> None:
        self.catalog.certified = await certifications(
            self.settings.bootstrap, topic=self.settings.certifications_topic
        )

    async def _follow_certifications(self) -> None:
        while True:
            await asyncio.sleep(CERTIFICATION_REFRESH_S)
            try:
                await self._refresh_certifications()
            except Exception:
                log.exception("reading certifications failed; keeping the last view")

    async def stop(self) -> None:
        self.ready = False
        if self._gate is not None:
            self._gate.cancel()
        await self.executor.stop()
        await self.engine.stop()
        await self.runlog.stop()
        await self.requester.stop()
        await self.definitions.stop()
