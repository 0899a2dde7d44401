"""How a process reaches Kafka: plain on a dev broker, SASL/SCRAM-SHA-256 with the process's
own principal in secure mode (MBS_KAFKA_USERNAME). Built once per process from the settings
and handed to every client, so no client reads settings or the environment itself."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from faststream.security import BaseSecurity, SASLScram256

if TYPE_CHECKING:
    from mbs.settings import Settings

MECHANISM = "SCRAM-SHA-256"


@dataclass(frozen=True)
class Connection:
    """A Kafka cluster and the principal this process uses on it (None: no authentication)."""

    bootstrap: str
    username: str | None = None
    password: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> Connection:
        return cls(settings.bootstrap, settings.kafka_username, settings.kafka_password)

    def as_principal(self, username: str, password: str) -> Connection:
        """The same cluster under another principal (the admin, while provisioning)."""
        return replace(self, username=username, password=password)

    def options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka producers, consumers and admin clients."""
        found: dict[str, Any] = {"bootstrap_servers": self.bootstrap}
        if self.username:
            found.update(
                security_protocol="SASL_PLAINTEXT",
                sasl_mechanism=MECHANISM,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password,
            )
        return found

    def broker_security(self) -> BaseSecurity | None:
        """The same, for a FastStream KafkaBroker."""
        if not self.username:
            return None
        return SASLScram256(self.username, self.password, use_ssl=False)
