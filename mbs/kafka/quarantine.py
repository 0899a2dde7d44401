"""Records no reader can use: skipped, logged, counted and copied aside, never fatal.

Every reader of a platform topic (the registry, certifications, journey definitions, the
journey log) reads through this module, so one unreadable record never stops a process nor
hides the records after it. A refused record is:

- skipped: the reader goes on with the next one;
- logged once per process, with topic, partition, offset and the reason;
- counted in `mbs_records_quarantined_total{topic,reason}`;
- copied to `<topic>.dlq` (compacted, key `<partition>:<offset>`, so every process that
  re-reads the same record at start overwrites the copy rather than adding one), with the
  original value, the original key in `mbs-source-key`, and `mbs-error`, `mbs-error-detail`,
  `mbs-source-topic`, `mbs-source-partition`, `mbs-source-offset`.

Reasons: `unreadable` (no key, a key that is not UTF-8, or a record the Kafka client cannot
decode at all), `not_json`, `schema_invalid` (JSON, but not what the topic holds), `refused`
(well-formed, but the reader must not act on it, e.g. a journey calling an unknown
capability). Copying happens in the background and only ever logs when it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter
from pydantic import ValidationError

from mbs import wire
from mbs.kafka.admin import ensure_topics
from mbs.kafka.connection import Connection

log = logging.getLogger("mbs.kafka.quarantine")

REASONS = ("unreadable", "not_json", "schema_invalid", "refused")
SOURCE_TOPIC = "mbs-source-topic"
SOURCE_PARTITION = "mbs-source-partition"
SOURCE_OFFSET = "mbs-source-offset"
SOURCE_KEY = "mbs-source-key"
DLQ_MAX_BYTES = 16 * 1024 * 1024  # room for any record its source topic took, plus headers
DLQ_CONFIG = {
    "cleanup.policy": "compact",
    "min.compaction.lag.ms": "0",
    "max.message.bytes": str(DLQ_MAX_BYTES),
}
DETAIL_CHARS = 300
REMEMBERED = 10_000  # records already reported by this process (not again at each replay)
COPY_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 2.0

Apply = Callable[[str, bytes | None], None]

# Defined here, in the layer that reads records; mbs.telemetry.metrics lists it with the rest.
RECORDS_QUARANTINED = Counter(
    "mbs_records_quarantined",
    "Records of platform topics skipped as unreadable or refused, by reason; each is copied "
    "to <topic>.dlq.",
    ["topic", "reason"],
)


def dlq_topic(topic: str) -> str:
    """`mbs.contracts` -> `mbs.contracts.dlq`, as `<capability>.v<major>` -> `...v<major>.dlq`."""
    return f"{topic}.dlq"


class BadRecord(ValueError):
    """Raised by a reader's `apply`: skip this record for `reason` (one of REASONS)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def text_key(key: bytes | None) -> str:
    """A table record's key as text; a record without one, or not UTF-8, is unreadable."""
    if key is None:
        raise BadRecord("unreadable", "the record has no key")
    try:
        return key.decode()
    except UnicodeDecodeError:
        raise BadRecord("unreadable", f"the key is not UTF-8 text: {key[:40]!r}") from None


def verdict(error: BaseException) -> tuple[str, str]:
    """Why a record was refused: a reason from REASONS and a short text an operator reads."""
    if isinstance(error, BadRecord):
        return error.reason, _short(error.detail)
    if isinstance(error, ValidationError):
        problems = error.errors(include_url=False, include_input=False, include_context=False)
        if any(p["type"] == "json_invalid" for p in problems):
            return "not_json", _short(
                f"not JSON: {problems[0]['msg'].removeprefix('Invalid JSON: ')}"
            )
        where = [_problem(e["loc"], e["msg"]) for e in problems]
        more = f" (and {len(where) - 3} more)" if len(where) > 3 else ""
        return "schema_invalid", _short(f"not a valid {error.title}: {'; '.join(where[:3])}{more}")
    if isinstance(error, json.JSONDecodeError):
        return "not_json", _short(f"not JSON: {error.msg} at line {error.lineno} col {error.colno}")
    if isinstance(error, UnicodeError):
        return "unreadable", "the value is not UTF-8 text"
    return "unreadable", _short(f"{type(error).__name__}: {error}")


def _problem(loc: tuple[int | str, ...], msg: str) -> str:
    msg = msg.removeprefix("Value error, ")
    return f"{'.'.join(str(p) for p in loc)}: {msg}" if loc else msg


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= DETAIL_CHARS else flat[: DETAIL_CHARS - 3] + "..."


def admit(record: Any, apply: Apply, quarantine: Quarantine) -> bool:
    """Hand one table record to `apply(key, value)` (value None: a tombstone); a record it
    refuses, or one without a UTF-8 key, is quarantined instead. True if applied."""
    try:
        apply(text_key(record.key), record.value)
    except Exception as exc:  # whatever the record holds, the reader goes on
        quarantine.refuse(record, exc)
        return False
    return True


@dataclass(frozen=True)
class Copy:
    """One refused record as it goes to the quarantine topic."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


class Copier(Protocol):
    """Writes copies somewhere (Kafka in production, a list in tests)."""

    async def __call__(self, copy: Copy) -> None: ...

    async def close(self) -> None: ...


class KafkaCopier:
    """Produces copies; its producer lives only while there is something to copy."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._producer: AIOKafkaProducer | None = None
        self._created: set[str] = set()

    async def __call__(self, copy: Copy) -> None:
        if copy.topic not in self._created:
            await ensure_topics(self.connection, [copy.topic], partitions=1, config=DLQ_CONFIG)
            self._created.add(copy.topic)
        if self._producer is None:
            producer = AIOKafkaProducer(
                **self.connection.options(), acks="all", max_request_size=DLQ_MAX_BYTES
            )
            await producer.start()
            self._producer = producer
        await self._producer.send_and_wait(  # one partition, even if someone made more
            copy.topic, copy.value, key=copy.key, headers=copy.headers, partition=0
        )

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


class Quarantine:
    """Where the refused records of one topic go (see the module docstring)."""

    def __init__(
        self, topic: str, connection: Connection | None = None, *, copier: Copier | None = None
    ) -> None:
        self.topic = topic
        self.dlq = dlq_topic(topic)
        self.counts: dict[str, int] = {}  # by reason, as reported by this instance
        self._copier = copier or (KafkaCopier(connection) if connection is not None else None)
        self._seen: OrderedDict[tuple[int, int], None] = OrderedDict()
        self._pending: deque[Copy] = deque()
        self._worker: asyncio.Task[None] | None = None

    def refuse(self, record: Any, error: BaseException) -> None:
        """Quarantine a consumed record (an aiokafka ConsumerRecord) `apply` raised on."""
        reason, detail = verdict(error)
        self.report(record.partition, record.offset, reason, detail, record.key, record.value)

    def report(
        self,
        partition: int,
        offset: int,
        reason: str,
        detail: str,
        key: bytes | None = None,
        value: bytes | None = None,
    ) -> bool:
        """Log, count and copy one record; False if this process reported it already."""
        where = (partition, offset)
        if where in self._seen:
            return False
        self._seen[where] = None
        while len(self._seen) > REMEMBERED:
            self._seen.popitem(last=False)
        self.counts[reason] = self.counts.get(reason, 0) + 1
        RECORDS_QUARANTINED.labels(topic=self.topic, reason=reason).inc()
        log.warning(
            "record %s[%d]@%d skipped (%s): %s; copied to %s",
            self.topic,
            partition,
            offset,
            reason,
            detail,
            self.dlq,
        )
        headers = [
            (wire.ERROR, reason.encode()),
            (wire.ERROR_DETAIL, detail.encode()),
            (SOURCE_TOPIC, self.topic.encode()),
            (SOURCE_PARTITION, str(partition).encode()),
            (SOURCE_OFFSET, str(offset).encode()),
        ]
        if key is not None:
            headers.append((SOURCE_KEY, key))
        # an empty value, never None: a null value would be a tombstone on the compacted copy
        self._enqueue(Copy(self.dlq, f"{partition}:{offset}".encode(), value or b"", headers))
        return True

    async def flush(self, timeout_s: float = COPY_TIMEOUT_S) -> None:
        """Wait (at most `timeout_s`) until every copy so far was written or given up."""
        worker = self._worker
        if worker is not None and not worker.done():
            await asyncio.wait({worker}, timeout=timeout_s)

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Give pending copies a moment, then drop them (they stay in the source topic)."""
        await self.flush(timeout_s)
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    def _enqueue(self, copy: Copy) -> None:
        if self._copier is None:
            return
        self._pending.append(copy)
        if self._worker is None or self._worker.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                log.warning("no event loop: %s is not copied to %s", copy.key, self.dlq)
                self._pending.clear()
                return
            self._worker = loop.create_task(self._drain(), name=f"quarantine {self.topic}")

    async def _drain(self) -> None:
        """Copy what is pending, one at a time, then let the producer go."""
        assert self._copier is not None
        while self._pending:  # again if more came while the producer was closing
            try:
                while self._pending:
                    await self._copy(self._copier, self._pending.popleft())
            finally:
                with contextlib.suppress(Exception):
                    await self._copier.close()

    async def _copy(self, copier: Copier, copy: Copy) -> None:
        try:
            await asyncio.wait_for(copier(copy), COPY_TIMEOUT_S)
        except Exception as exc:  # the copy is a courtesy: never the reader's problem
            log.warning(
                "could not copy %s:%s to %s (%s: %s); it is still in the source topic",
                self.topic,
                copy.key.decode(),
                self.dlq,
                type(exc).__name__,
                exc,
            )
