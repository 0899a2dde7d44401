"""Kafka plumbing: one connection per process, topics created up front, request/reply, and
compacted topics read as tables."""

from mbs.kafka.admin import ensure_topics
from mbs.kafka.compacted import COMPACTED, CompactedTopic
from mbs.kafka.connection import Connection
from mbs.kafka.rpc import Reply, Requester

__all__ = ["COMPACTED", "CompactedTopic", "Connection", "Reply", "Requester", "ensure_topics"]
