"""Certifications: which contract text of which unit passed the conformance kit, as records
on the compacted topic `mbs.certifications` (keyed `capability@version/unit`; a tombstone
revokes one). A record that is not a certification is skipped and copied to
`mbs.certifications.dlq`, never trusted. Reading them needs no test-data machinery, so the
gateway imports only this."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mbs.contract.model import Contract
from mbs.kafka.compacted import CompactedTopic
from mbs.kafka.connection import Connection

CERTIFICATIONS_TOPIC = "mbs.certifications"

Certified = Mapping[str, Mapping[str, Any]]


class Certification(BaseModel):
    """What a record must hold to be read as a certification (more fields are kept as is)."""

    model_config = ConfigDict(extra="allow")

    passed: bool = Field(strict=True)
    contract_sha256: str = Field(strict=True)


def certification_key(contract: Contract) -> str:
    """`capability@version/unit`, for home units and other providers alike."""
    return f"{contract.capability}@{contract.version}/{contract.unit}"


def fingerprint(contract: Contract) -> str:
    """Which contract text was certified: a changed document under the same version is not."""
    return hashlib.sha256(contract.model_dump_json().encode()).hexdigest()


def is_certified(certified: Certified, contract: Contract) -> bool:
    """True when this very contract (same text) of this unit passed the kit."""
    record = certified.get(certification_key(contract))
    if record is None:
        return False
    return record.get("passed") is True and record.get("contract_sha256") == fingerprint(contract)


class Certifications:
    """Every standing certification, kept current from the topic (`follow()`) or read once
    (`catch_up()`)."""

    def __init__(self, connection: Connection, topic: str = CERTIFICATIONS_TOPIC) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.table = CompactedTopic(connection, topic, self.apply)

    def apply(self, key: str, value: bytes | None) -> None:
        if value is None:
            self.records.pop(key, None)
        else:
            self.records[key] = Certification.model_validate_json(value).model_dump()


async def certifications(
    connection: Connection, *, topic: str = CERTIFICATIONS_TOPIC
) -> dict[str, dict[str, Any]]:
    """Every standing certification, by `capability@version/unit`, as of now."""
    found = Certifications(connection, topic)
    await found.table.catch_up()
    return found.records
