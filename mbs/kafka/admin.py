"""Create the topics a process needs, so nothing depends on broker-side auto-creation.

Replication follows the cluster: a topic gets min(3, brokers) replicas, and with three
`min.insync.replicas=2`, so an `acks=all` write survives the loss of any one broker and a
single node (the dev broker) works unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from mbs.backoff import Backoff
from mbs.errors import BrokerError
from mbs.kafka.connection import Connection

DEFAULT_PARTITIONS = 3
MAX_REPLICAS = 3
RETRIES = 9  # about 26 s in all: longer than a cluster takes to fence a dead node
BACKOFF = Backoff(0.2, 5.0)
log = logging.getLogger("mbs.kafka.admin")


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
        for attempt in range(1, RETRIES + 1):
            try:
                await _create_missing(admin, wanted, partitions, config or {})
                return
            except KafkaError as exc:  # a node of a cluster down, not yet fenced: wait, retry
                if not exc.retriable or attempt == RETRIES:
                    raise
                log.warning("creating topics: %r; retry %d of %d", exc, attempt, RETRIES - 1)
                await asyncio.sleep(BACKOFF.delay(attempt))
    finally:
        await admin.close()


async def _create_missing(
    admin: AIOKafkaAdminClient, wanted: list[str], partitions: int, config: dict[str, str]
) -> None:
    existing = set(await admin.list_topics())
    missing = [name for name in wanted if name not in existing]
    if missing:
        replicas, configs = await replication(admin, config)
        new = [NewTopic(name, partitions, replicas, topic_configs=configs) for name in missing]
        # another process may create one between list and create: that is fine
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(new)
        await _wait_visible(admin, missing)


async def replication(
    admin: AIOKafkaAdminClient, config: dict[str, str]
) -> tuple[int, dict[str, str]]:
    """Replicas for a new topic on this cluster, and its config with `min.insync.replicas`."""
    brokers = len((await admin.describe_cluster()).get("brokers", [])) or 1
    replicas = min(MAX_REPLICAS, brokers)
    if replicas >= MAX_REPLICAS:
        config = {"min.insync.replicas": str(replicas - 1), **config}
    return replicas, config


async def _wait_visible(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    for _ in range(50):
        if set(names) <= set(await admin.list_topics()):
            return
        await asyncio.sleep(0.1)
