"""Journey definitions, versioned, in `mbs.journeys.defs` (compacted, key `name@version`).

Every gateway instance reads the topic and follows it, so `PUT /journeys/{name}` on one
instance puts the new version live on all of them without a restart; runs keep the version
they started with. Each record is checked as `PUT` checks a body (the model, then the
capabilities and fields it uses against this gateway's catalog): one that fails never goes
live; it is skipped and copied to `<topic>.dlq` (see `mbs.kafka.quarantine`).
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from gateway.catalog import Catalog
from gateway.definition.checks import check
from gateway.definition.model import JourneyDefinition
from mbs.errors import JourneyDefinitionError, VersionConflict
from mbs.kafka import BadRecord, CompactedTopic, Connection, verdict

DEFS_CONFIG = {"cleanup.policy": "compact"}


class DefinitionStore:
    """All versions of all journeys; `latest(name)` is the live one."""

    def __init__(self, connection: Connection, topic: str, catalog: Catalog) -> None:
        self.connection, self.topic, self.catalog = connection, topic, catalog
        self.versions: dict[tuple[str, int], JourneyDefinition] = {}
        self.refused: dict[str, str] = {}  # key -> why its newest record is not live
        self._table = CompactedTopic(connection, topic, self.apply, config=DEFS_CONFIG)
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
        key = f"{definition.name}@{definition.version}"
        meta = await self._producer.send_and_wait(
            self.topic, definition.model_dump_json().encode(), key=key.encode()
        )
        await self._table.wait_for(meta.offset + 1)
        if key in self.refused:  # the catalog changed between the check and the read-back
            raise JourneyDefinitionError(f"{key} was not put live: {self.refused[key]}")

    def apply(self, key: str, value: bytes | None) -> None:
        """One record: live only if it passes `_checked`; otherwise it raises (and the reader
        quarantines it), and a version already live under the same key stays live."""
        if value is None:
            return
        self.refused.pop(key, None)
        try:
            definition = self._checked(key, value)
        except Exception as exc:
            self.refused[key] = verdict(exc)[1]
            raise
        self.versions[(definition.name, definition.version)] = definition

    def _checked(self, key: str, value: bytes) -> JourneyDefinition:
        """The definition in a record, filed under its own `name@version`, checked against
        the catalog as `PUT /journeys/{name}` checks a body."""
        definition = JourneyDefinition.model_validate_json(value)
        named = f"{definition.name}@{definition.version}"
        if named != key:
            raise BadRecord("refused", f"filed under {key!r}, but defines {named}")
        try:
            check(definition, self.catalog, f"{self.topic} {key}")
        except JourneyDefinitionError as exc:
            raise BadRecord("refused", str(exc)) from None
        except Exception as exc:  # the checks themselves failed on it: not live either
            raise BadRecord("refused", f"the checks failed: {type(exc).__name__}: {exc}") from exc
        return definition
