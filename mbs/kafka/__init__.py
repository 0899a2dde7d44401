"""Kafka plumbing: one connection per process, topics created up front, request/reply,
compacted topics read as tables, and the quarantine of records no reader can use."""

from mbs.kafka.admin import ensure_topics
from mbs.kafka.compacted import COMPACTED, CompactedTopic, RecordReader
from mbs.kafka.connection import Connection
from mbs.kafka.quarantine import (
    RECORDS_QUARANTINED,
    BadRecord,
    Quarantine,
    admit,
    dlq_topic,
    text_key,
    verdict,
)
from mbs.kafka.rpc import Reply, Requester

__all__ = [
    "COMPACTED",
    "RECORDS_QUARANTINED",
    "BadRecord",
    "CompactedTopic",
    "Connection",
    "Quarantine",
    "RecordReader",
    "Reply",
    "Requester",
    "admit",
    "dlq_topic",
    "ensure_topics",
    "text_key",
    "verdict",
]
