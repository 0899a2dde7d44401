"""Journey definitions, versioned, in `mbs.journeys.defs` (compacted, key `name@version`).

Every gateway instance reads the topic and follows it, so `PUT /journeys/{name}` on one
instance puts the new version live on all of them without a restart; runs keep the version
they started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from gateway.definitions import JourneyDefinition
from mbs.errors import MbsError
from mbs.kafka import client_options
from mbs.topics import ensure_topics

log = logging.getLogger("mbs.gateway.defs")
DEFS_CONFIG = {"cleanup.policy": "compact"}


class VersionConflict(MbsError):
    """A definition's version is not newer than the live one."""


class DefinitionStore:
    """All versions of all journeys; `latest(name)` is the live one."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.versions: dict[tuple[str, int], JourneyDefinition] = {}
        self._offset = 0
        self._changed = asyncio.Condition()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None

    def latest(self, name: str) -> JourneyDefinition | None:
        found = [d for (n, _), d in self.versions.items() if n == name]
        return max(found, key=lambda d: d.version, default=None)

    def names(self) -> list[str]:
        return sorted({name for name, _ in self.versions})

    async def start(self) -> None:
        await ensure_topics(self.bootstrap, [self.topic], partitions=1, config=DEFS_CONFIG)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, **client_options(), acks="all"
        )
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            **client_options(),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        await self._consumer.start()
        tp = TopicPartition(self.topic, 0)
        self._consumer.assign([tp])
        self._consumer.seek(tp, 0)
        end = (await self._consumer.end_offsets([tp]))[tp]
        self._task = asyncio.create_task(self._follow(), name="journey-defs")
        await self._caught_up(end)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()

    async def seed(self, definitions: list[JourneyDefinition]) -> None:
        """Publish shipped definitions whose version the topic does not have yet."""
        for definition in definitions:
            if (definition.name, definition.version) not in self.versions:
                await self._write(definition)

    async def put(self, definition: JourneyDefinition) -> None:
        """Publish a new version; it is live on return (read back from the topic)."""
        current = self.latest(definition.name)
        if current is not None and definition.version <= current.version:
            raise VersionConflict(
                f"{definition.name} is live at version {current.version}; "
                f"a new definition needs a version above it (got {definition.version})"
            )
        await self._write(definition)

    async def _write(self, definition: JourneyDefinition) -> None:
        assert self._producer is not None
        meta = await self._producer.send_and_wait(
            self.topic,
            definition.model_dump_json().encode(),
            key=f"{definition.name}@{definition.version}".encode(),
        )
        await self._caught_up(meta.offset + 1)

    async def _caught_up(self, offset: int) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self._offset >= offset), 30)

    async def _follow(self) -> None:
        assert self._consumer is not None
        async for record in self._consumer:
            if record.value is not None:
                try:
                    definition = JourneyDefinition.model_validate_json(record.value)
                    self.versions[(definition.name, definition.version)] = definition
                except ValueError:
                    log.exception("unreadable journey definition at offset %d", record.offset)
            async with self._changed:
                self._offset = record.offset + 1
                self._changed.notify_all()
