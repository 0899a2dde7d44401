"""Platform configuration, read once from `MBS_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from mbs import wire


def _default_home() -> Path:
    return Path.home() / ".cache" / "mbs"


def _default_unit_state_dir(data: dict[str, Any]) -> Path:
    home: Path = data["home"]
    return home / "units"


class ApiKey(BaseModel):
    """Who holds an API key and what they may do."""

    caller: str
    role: Literal["caller", "admin", "partner", "metrics"]


DEV_API_KEYS = {
    "dev-caller-key": ApiKey(caller="webshop", role="caller"),
    "dev-admin-key": ApiKey(caller="ops", role="admin"),
    "dev-fastship-key": ApiKey(caller="fastship", role="partner"),
    "dev-paylater-key": ApiKey(caller="paylater", role="partner"),
    "dev-metrics-key": ApiKey(caller="prometheus", role="metrics"),
}
# Development only, like the keys above: base64 of b"mbs-dev-secrets-key-not-for-prod".
DEV_SECRETS_KEY = "bWJzLWRldi1zZWNyZXRzLWtleS1ub3QtZm9yLXByb2Q="


class Settings(BaseSettings):
    """Every knob of the platform; each field is `MBS_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="MBS_", extra="ignore")

    kafka_bootstrap: str | None = Field(
        default=None,
        description="Use this existing Kafka cluster instead of the local broker.",
    )
    kafka_username: str | None = Field(
        default=None, description="SASL/SCRAM principal of this process (secure mode)."
    )
    kafka_password: str = Field(default="", description="Its password.")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="SCRAM-SHA-256",
        description="SASL mechanism in secure mode: SCRAM-SHA-256 (the local secure broker) or "
        "SCRAM-SHA-512 (Strimzi's KafkaUsers).",
    )
    home: Path = Field(
        default_factory=_default_home, description="State: broker data, logs of local runs."
    )
    cache_dir: Path = Field(
        default_factory=_default_home, description="Downloads kept across runs (Kafka jars)."
    )
    broker_port: int = Field(default=9092, ge=1, le=65535, description="Local broker port.")
    broker_heap: str = Field(default="512m", description="Local broker JVM heap (-Xmx).")
    broker_start_timeout: float = Field(default=90.0, gt=0, description="Seconds to wait for up.")
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=1, le=65535)
    up_timeout: float = Field(
        default=120.0, gt=0, description="Seconds `mbs up` waits for every process to be ready."
    )
    stop_grace: float = Field(
        default=15.0,
        gt=0,
        description="Seconds `mbs down` gives each process between SIGTERM and SIGKILL.",
    )
    gateway_url: str = Field(
        default="http://127.0.0.1:8080", description="Where CLI commands find the gateway."
    )
    api_key: str = Field(default="dev-caller-key", description="The CLI's key for the gateway.")
    unit_host: str = Field(default="127.0.0.1", description="Where units serve /metrics.")
    unit_port: int | None = Field(
        default=None, ge=0, le=65535, description="Override the unit's ops port (0: any free)."
    )
    unit_concurrency: int = Field(
        default=3, ge=1, le=64, description="Partitions a unit works on at once, per capability."
    )
    unit_state_dir: Path = Field(
        default_factory=_default_unit_state_dir,
        description="Where units keep their state and replies (<unit>.sqlite3); default "
        "MBS_HOME/units. Every instance of a unit must see the same directory.",
    )
    reply_retention_hours: float = Field(
        default=168.0, gt=0, description="How long a unit remembers the answer to a message id."
    )
    contracts_topic: str = Field(
        default=wire.CONTRACTS_TOPIC, description="The registry topic (tests use their own)."
    )
    require_certification: bool = Field(
        default=False,
        description="Give partners live traffic only once `mbs contracts verify` passed.",
    )
    certifications_topic: str = Field(default="mbs.certifications")
    journeys_dir: Path | None = Field(
        default=None, description="Journey YAML directory (default: gateway/journeys)."
    )
    api_keys: dict[str, ApiKey] = Field(
        default_factory=lambda: dict(DEV_API_KEYS),
        description='JSON: {"key": {"caller": "webshop", "role": "caller|admin|partner|'
        'metrics"}}. `metrics` may only scrape /metrics (as a Bearer token or X-API-Key).',
    )
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="Largest HTTP request body the gateway reads; a larger one gets 413 "
        "before it is read.",
    )
    max_record_bytes: int = Field(
        default=1_000_000,
        ge=65_536,
        description="Largest journey-log record (one run's state). It must not exceed the "
        "broker's message.max.bytes; the journey input may take a quarter of it, the replies "
        "kept half; a larger input gets 413, a larger reply fails its step.",
    )
    journeys_topic: str = Field(default=wire.JOURNEY_STATE_TOPIC, description="Journey log topic.")
    definitions_topic: str = Field(default=wire.JOURNEY_DEFS_TOPIC, description="Versions topic.")
    gateway_group: str = Field(default="mbs.gateway", description="Executor consumer group.")
    journey_retention_s: float = Field(
        default=86_400.0,
        gt=0,
        description="Seconds a finished run stays in the journey log before its partition's "
        "owner deletes it; parked runs stay until an operator resolves them.",
    )
    run_cache_mb: float = Field(
        default=64.0,
        gt=0,
        description="MB of recent runs (their raw states) a gateway keeps to answer GET on a run "
        "and callers waiting for an outcome; the least recently written go first.",
    )
    journey_retained_runs: int = Field(
        default=200_000,
        ge=1,
        description="Finished runs a gateway keeps per its partitions at most; older ones are "
        "deleted sooner (bounds the log and the gateway's memory of what to delete).",
    )
    request_timeout: float = Field(
        default=10.0, gt=0, description="Default seconds a step waits for its reply."
    )
    instance_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="A stable name of this process among the instances of its unit or of the "
        "gateway (a pod name, `payments-1`). Set, the process joins its consumer groups as a "
        "static member (Kafka KIP-345): restarted under the same name within the session "
        "timeout, it gets its partitions back at once, and the others are not rebalanced. "
        "Two live processes of one unit, or two gateways, must never share one.",
    )
    undo_attempts: int = Field(
        default=6,
        ge=1,
        le=100,
        description="Answers that settle or undo nothing (a provider saying no, or breaking "
        "its contract) one side effect of a run may get before it is parked (status "
        "compensation_failed), with backoff from 0.2 s doubling to 5 s. Silence is not an "
        "answer: see MBS_UNDO_PATIENCE_S.",
    )
    undo_patience_s: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds after a run's outcome that a provider which does not answer at "
        "all (down, restarting, cut off) is still asked, in rounds from 1 s doubling to 30 s "
        "apart, to settle or undo a side effect of the run; then the side effect is parked.",
    )
    secrets_key: SecretStr = Field(
        default=SecretStr(DEV_SECRETS_KEY),
        description="Key of the journey log's secrets: input fields a step's contract marks "
        "`writeOnly` (a card token) are kept there AES-256-GCM encrypted while their run may "
        "still send them, then dropped. 32 random bytes, URL-safe base64 (`python -c 'import "
        "base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())'`); every gateway "
        "instance needs the same. Rotation: `new,old` (encrypts with the first, opens with "
        "any). The default is the development key, public: never use it in production.",
    )

    @property
    def bootstrap(self) -> str:
        """The Kafka bootstrap address every client uses."""
        return self.kafka_bootstrap or f"127.0.0.1:{self.broker_port}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once at start-up."""
    return Settings()
