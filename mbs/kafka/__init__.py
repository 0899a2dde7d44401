"""Kafka plumbing: one connection per process, topics created up front, request/reply,
compacted topics read as tables, and the quarantine of records no reader can use."""

from mbs.kafka.admin import ensure_topics
from mbs.kafka.compacted import COMPACTED, CompactedTopic
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
from mbs.kafka.replies import ReplyReader
from mbs.kafka.rpc import Reply, Requester, text_headers
from mbs.kafka.undecodable import UNDECODABLE, RecordReader, Skipped, pass_undecodable

__all__ = [
    "COMPACTED",
    "RECORDS_QUARANTINED",
    "UNDECODABLE",
    "BadRecord",
    "CompactedTopic",
    "Connection",
    "Quarantine",
    "RecordReader",
    "Reply",
    "ReplyReader",
    "Requester",
    "Skipped",
    "admit",
    "dlq_topic",
    "ensure_topics",
    "pass_undecodable",
    "text_headers",
    "text_key",
    "verdict",
]
