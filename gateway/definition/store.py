"""Journey definitions, versioned, in `mbs.journeys.defs` (compacted, key `name@version`).

Every gateway instance reads the topic and follows it, so `PUT /journeys/{name}` on one
instance puts the new version live on all of them without a restart; runs keep the version
they started with.
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from gateway.definition.model import JourneyDefinition
from mbs.errors import VersionConflict
from mbs.kafka import CompactedTopic, Connection

DEFS_CONFIG = {"cleanup.policy": "compact"}


class DefinitionStore:
    """All versions of all journeys; `latest(name)` is the live one."""

    def __init__(self, connection: Connection, topic: str) -> None:
        self.connection, self.topic = connection, topic
        self.versions: dict[tuple[str, int], JourneyDefinition] = {}
        self._table = CompactedTopic(connection, topic, self._apply, config=DEFS_CONFIG)
        self._producer: AIOKafkaProducer | None = None

    def latest(self, name: str) -> JourneyDefinition | None:
        found = [d for (n, _), d in self.versions.items() if n == name]
        return max(found, key=lambda d: d.version, default=None)

    def names(self) -> list[str]:
        return sorted({name for name, _ in self.versions})

    async def start(self) -> None:
        """Read every version there is, then follow the topic."""
        self._producer = AIOKafkaProducer(**self.connection.options(), acks="all")
        await self._producer.start()
        await self._table.follow()

    async def stop(self) -> None:
        await self._table.stop()
        if self._producer is not None:
            await self._producer.stop()

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
        await self._table.wait_for(meta.offset + 1)

    def _apply(self, key: str, value: bytes | None) -> None:
        if value is not None:
            definition = JourneyDefinition.model_validate_json(value)
            self.versions[(definition.name, definition.version)] = definition
