"""Create the topics a process needs, so nothing depends on broker-side auto-creation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from mbs.errors import BrokerError
from mbs.kafka.connection import Connection

DEFAULT_PARTITIONS = 3


async def ensure_topics(
    connection: Connection,
    names: Iterable[str],
    *,
    partitions: int = DEFAULT_PARTITIONS,
    config: dict[str, str] | None = None,
) -> None:
    """Create each missing topic; existing ones are left as they are."""
    wanted = sorted(set(names))
    if not wanted:
        return
    admin = AIOKafkaAdminClient(**connection.options(), request_timeout_ms=15_000)
    try:
        await admin.start()
    except KafkaConnectionError as exc:
        raise BrokerError(
            f"cannot reach Kafka at {connection.bootstrap}: start it with `mbs broker up` "
            "or set MBS_KAFKA_BOOTSTRAP"
        ) from exc
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            new = [NewTopic(name, partitions, 1, topic_configs=config or {}) for name in missing]
            # another process may create one between list and create: that is fine
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
            await _wait_visible(admin, missing)
    finally:
        await admin.close()


async def _wait_visible(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    for _ in range(50):
        if set(names) <= set(await admin.list_topics()):
            return
        await asyncio.sleep(0.1)
