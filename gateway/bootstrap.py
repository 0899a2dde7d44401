"""The wiring of one gateway process: everything it holds, built in one place from one Kafka
connection, and started in order."""

from __future__ import annotations

import logging

import contracts
from gateway.catalog import Catalog
from gateway.definition import JOURNEYS_DIR, load_all
from gateway.definition.store import DefinitionStore
from gateway.engine import JourneyEngine, UndoPolicy
from gateway.executor import Executor
from gateway.observers import PrometheusObserver
from gateway.retention import Retention
from gateway.runlog import RunLog
from gateway.secrets import Vault
from gateway.transport import KafkaTransport
from mbs import wire as h
from mbs.contract import Certifications, Registry
from mbs.kafka import Connection, Requester
from mbs.kafka.health import BrokerWatch
from mbs.settings import Settings

log = logging.getLogger("mbs.gateway")


class Gateway:
    """Catalog, definitions, journey log, engine and executor of one gateway instance."""

    def __init__(self, settings: Settings, catalog: Catalog | None = None) -> None:
        self.settings = settings
        self.catalog = catalog or Catalog(contracts.all_contracts())
        connection = Connection.from_settings(settings)
        self.registry = Registry(connection, client="gateway", topic=settings.contracts_topic)
        self.certifications = Certifications(connection, settings.certifications_topic)
        self.definition_store = DefinitionStore(
            connection, settings.definitions_topic, self.catalog
        )
        # the instances split the reply topics' partitions: each reads its own replies only
        self.requester = Requester(
            connection,
            caller="gateway",
            group=f"{settings.gateway_group}.replies",
            instance=settings.instance_id,
        )
        self.broker = BrokerWatch(connection)
        self.runlog = RunLog(
            connection,
            settings.journeys_topic,
            settings.gateway_group,
            cache_bytes=int(settings.run_cache_mb * (1 << 20)),
            instance=settings.instance_id,
        )
        self.engine = JourneyEngine(
            KafkaTransport(self.requester),
            self.catalog,
            self.runlog.save,
            default_timeout_s=settings.request_timeout,
            undo_policy=UndoPolicy(
                attempts=settings.undo_attempts, patience_s=settings.undo_patience_s
            ),
            observers=[PrometheusObserver()],
            record_limit=settings.max_record_bytes,
            vault=Vault.from_settings(settings),
        )
        self.retention = Retention(
            self.runlog.delete, settings.journey_retention_s, settings.journey_retained_runs
        )
        self.executor = Executor(
            self.engine, self.runlog, self.definition_store.versions, self.retention
        )
        self.started = False

    def readiness(self) -> dict[str, bool]:
        """What `/readyz` checks: each must hold for the gateway to take traffic."""
        return {
            "started": self.started,
            "kafka_reachable": self.broker.reachable,
            "journeys_replayed": self.executor.caught_up and self.runlog.caught_up,
        }

    @property
    def ready(self) -> bool:
        return all(self.readiness().values())

    async def start(self) -> None:
        await self.broker.start()
        view = await self.registry.sync()
        self.catalog.update(view.current())
        shipped = load_all(self.catalog, self.settings.journeys_dir or JOURNEYS_DIR)
        await self.definition_store.start()
        await self.definition_store.seed(list(shipped.values()))
        units = {c.unit for c in self.catalog.contracts()}
        await self.requester.start(h.reply_topic(unit) for unit in units)
        await self.runlog.start(self.executor)
        self.retention.start()
        if self.settings.require_certification:
            await self.certifications.table.follow()  # kept current as partners certify
            self.catalog.certified = self.certifications.records
        self.started = True
        log.info("gateway ready: journeys %s", ", ".join(self.definition_store.names()))

    async def stop(self) -> None:
        self.started = False
        await self.certifications.table.stop()
        await self.retention.stop()
        await self.executor.stop()
        await self.engine.stop()
        await self.runlog.stop()
        await self.requester.stop()
        await self.definition_store.stop()
        await self.broker.stop()
