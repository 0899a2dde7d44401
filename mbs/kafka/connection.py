"""How a process reaches Kafka: plain on a dev broker, SASL/SCRAM with the process's own
principal in secure mode (MBS_KAFKA_USERNAME): SCRAM-SHA-256 on the local secure broker,
SCRAM-SHA-512 where the cluster says so (Strimzi's users; MBS_KAFKA_SASL_MECHANISM). Built
once per process from the settings and handed to every client, so no client reads settings or
the environment itself."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from faststream.security import BaseSecurity, SASLScram256, SASLScram512

if TYPE_CHECKING:
    from mbs.settings import Settings

MECHANISM = "SCRAM-SHA-256"
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class Connection:
    """A Kafka cluster and the principal this process uses on it (None: no authentication)."""

    bootstrap: str
    username: str | None = None
    password: str = ""
    mechanism: str = MECHANISM

    @classmethod
    def from_settings(cls, settings: Settings) -> Connection:
        return cls(
            settings.bootstrap,
            settings.kafka_username,
            settings.kafka_password,
            settings.kafka_sasl_mechanism,
        )

    def as_principal(self, username: str, password: str) -> Connection:
        """The same cluster under another principal (the admin, while provisioning)."""
        return replace(self, username=username, password=password)

    def servers(self) -> list[str]:
        """The bootstrap addresses one by one (`a:9092,b:9094` is two brokers)."""
        return [part.strip() for part in self.bootstrap.split(",") if part.strip()]

    def options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka producers, consumers and admin clients."""
        found: dict[str, Any] = {"bootstrap_servers": self.bootstrap}
        if self.username:
            found.update(
                security_protocol="SASL_PLAINTEXT",
                sasl_mechanism=self.mechanism,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password,
            )
        return found

    def broker_security(self) -> BaseSecurity | None:
        """The same, for a FastStream KafkaBroker."""
        if not self.username:
            return None
        scram = SASLScram512 if self.mechanism == "SCRAM-SHA-512" else SASLScram256
        return scram(self.username, self.password, use_ssl=False)
