"""Secure mode: one SASL/SCRAM principal per unit, partner and gateway, and ACLs that let each
read only its own requests and write only its own replies (see DESIGN.md, "Topics")."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from mbs import wire as h
from mbs.contract.model import Contract
from mbs.errors import MbsError
from mbs.kafka.quarantine import dlq_topic
from mbs.settings import Settings

LITERAL, PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
TOPIC, GROUP, TXN = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
READ, WRITE, DESCRIBE, CREATE = (
    AclOperation.READ,
    AclOperation.WRITE,
    AclOperation.DESCRIBE,
    AclOperation.CREATE,
)
Grant = tuple[ResourceType, str, ResourcePatternType, AclOperation]
GATEWAY = "gateway"


@dataclass(frozen=True)
class Credentials:
    """A principal's SCRAM credentials, as MBS_* variables for its process."""

    username: str
    password: str

    def env(self) -> dict[str, str]:
        return {"MBS_KAFKA_USERNAME": self.username, "MBS_KAFKA_PASSWORD": self.password}

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / f"{self.username}.env"
        path.touch(mode=0o600)
        path.write_text("".join(f"{k}={v}\n" for k, v in self.env().items()))
        return path

    @classmethod
    def load(cls, directory: Path, username: str) -> Credentials:
        path = directory / f"{username}.env"
        if not path.is_file():
            raise MbsError(
                f"no credentials for {username!r} in {directory}: `mbs broker up --secure` "
                "provisions every unit of this checkout (new ones too), `mbs partners add "
                f"{username}` a partner from its contract file"
            )
        values = dict(line.split("=", 1) for line in path.read_text().splitlines() if line)
        return cls(values["MBS_KAFKA_USERNAME"], values["MBS_KAFKA_PASSWORD"])


def unit_grants(unit: str, contracts: Iterable[Contract]) -> list[Grant]:
    """Read its request topics, write its reply and dead-letter topics, use its own groups."""
    reply = h.reply_topic(unit)
    grants: list[Grant] = [(TOPIC, reply, LITERAL, op) for op in (WRITE, READ, DESCRIBE)]
    grants.append((GROUP, f"mbs.unit.{unit}.", PREFIXED, READ))
    for c in contracts:
        grants += [(TOPIC, c.request_topic, LITERAL, op) for op in (READ, DESCRIBE)]
        grants += [(TOPIC, c.dlq_topic, LITERAL, op) for op in (WRITE, DESCRIBE)]
    return grants


def gateway_grants(contracts: Iterable[Contract], group: str, contracts_topic: str) -> list[Grant]:
    """Write every request topic, read every reply topic, own the journey log (its fenced
    writers too) and the registry."""
    grants: list[Grant] = [(TOPIC, "mbs.replies.", PREFIXED, op) for op in (READ, DESCRIBE)]
    grants += [(TOPIC, "mbs.journeys.", PREFIXED, op) for op in (READ, WRITE, DESCRIBE, CREATE)]
    grants += [(TOPIC, contracts_topic, LITERAL, op) for op in (READ, WRITE, DESCRIBE)]
    grants += [(TOPIC, "mbs.certifications", LITERAL, op) for op in (READ, DESCRIBE)]
    grants.append((GROUP, group, LITERAL, READ))
    grants.append((GROUP, f"{group}.replies", LITERAL, READ))  # instances split the replies
    # the journey log's fenced writers: one transactional id per partition, `<group>.p<n>`
    grants += [(TXN, f"{group}.p", PREFIXED, op) for op in (WRITE, DESCRIBE)]
    for c in contracts:
        grants += [(TOPIC, c.request_topic, LITERAL, op) for op in (WRITE, DESCRIBE)]
    return grants


def platform_grants(settings: Settings) -> list[Grant]:
    """The gateway reads the certifications it is configured with, and copies a registry or
    certification record it cannot use to that topic's dead-letter topic, creating it if
    missing as every reader's quarantine does (the journey topics' are under its
    `mbs.journeys.` prefix)."""
    grants: list[Grant] = [
        (TOPIC, settings.certifications_topic, LITERAL, op) for op in (READ, DESCRIBE)
    ]
    for topic in (settings.contracts_topic, settings.certifications_topic):
        grants += [(TOPIC, dlq_topic(topic), LITERAL, op) for op in (WRITE, CREATE, DESCRIBE)]
    return grants


def ecosystem_grants(contracts: Iterable[Contract], settings: Settings) -> dict[str, list[Grant]]:
    """Every principal's grants (each unit's, the gateway's): the one list that both
    `mbs broker up --secure` and the KafkaUsers of deploy/k8s grant, so they cannot drift."""
    offered = list(contracts)
    by_unit: dict[str, list[Contract]] = {}
    for contract in offered:
        by_unit.setdefault(contract.unit, []).append(contract)
    found = {unit: unit_grants(unit, mine) for unit, mine in sorted(by_unit.items())}
    gateway = gateway_grants(offered, settings.gateway_group, settings.contracts_topic)
    found[GATEWAY] = gateway + platform_grants(settings)
    return found


class SecurityAdmin:
    """Principals, topics and ACLs, managed with the broker's super user."""

    def __init__(self, bootstrap: str, admin_password: str) -> None:
        self.client = AdminClient(
            {
                "bootstrap.servers": bootstrap,
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "SCRAM-SHA-256",
                "sasl.username": "admin",
                "sasl.password": admin_password,
            }
        )

    def principal(self, name: str) -> Credentials:
        """Create (or re-key) a principal; its password is new and shown only to the caller."""
        password = secrets.token_urlsafe(18)
        upsert = UserScramCredentialUpsertion(
            name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), password.encode()
        )
        for future in self.client.alter_user_scram_credentials([upsert]).values():
            future.result(30)
        return Credentials(name, password)

    def topics(
        self, names: Iterable[str], partitions: int = 3, config: dict[str, str] | None = None
    ) -> None:
        new = [
            NewTopic(n, num_partitions=partitions, replication_factor=1, config=config or {})
            for n in sorted(set(names))
        ]
        if not new:
            return
        for name, future in self.client.create_topics(new).items():
            try:
                future.result(30)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise MbsError(f"creating topic {name} failed: {exc}") from exc

    def grant(self, principal: str, grants: Iterable[Grant]) -> None:
        """Allow each grant (the broker keeps an ACL once, however often it is granted)."""
        bindings = [
            AclBinding(kind, name, pattern, f"User:{principal}", "*", op, AclPermissionType.ALLOW)
            for kind, name, pattern, op in dict.fromkeys(grants)
        ]
        for future in self.client.create_acls(bindings).values():
            future.result(30)
