"""Is the cluster reachable right now? Asked every second with a short timeout, so `/readyz`
can say no within seconds of an outage rather than while requests hang on it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaClient

from mbs.kafka.connection import Connection

log = logging.getLogger("mbs.kafka.health")
PROBE_EVERY_S = 1.0
PROBE_TIMEOUT_S = 2.0


class BrokerWatch:
    """Asks the cluster for its metadata in the background; `reachable` is the last answer."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.reachable = False
        self.since = time.monotonic()  # when `reachable` last changed
        self._client: AIOKafkaClient | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._client = AIOKafkaClient(**self.connection.options(), request_timeout_ms=5000)
        await self._client.bootstrap()
        self._set(True)
        self._task = asyncio.create_task(self._watch(), name="broker-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.close()

    async def probe(self) -> bool:
        """One metadata round trip to any broker, within PROBE_TIMEOUT_S."""
        assert self._client is not None, "start() first"
        try:
            await asyncio.wait_for(self._client.fetch_all_metadata(), PROBE_TIMEOUT_S)
        except Exception:  # any failure means: not reachable now
            return False
        return True

    async def _watch(self) -> None:
        while True:
            self._set(await self.probe())
            await asyncio.sleep(PROBE_EVERY_S)

    def _set(self, reachable: bool) -> None:
        if reachable != self.reachable:
            log.log(
                logging.INFO if reachable else logging.WARNING,
                "Kafka %s",
                "reachable again" if reachable else "unreachable",
            )
            self.reachable, self.since = reachable, time.monotonic()
