"""The contract a unit declares for each capability it offers (see DESIGN.md, "Contracts")."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from mbs import wire

_CAPABILITY = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?$")
_UNIT = re.compile(r"^[a-z][a-z0-9_-]*$")


class Sla(BaseModel):
    """What a unit promises about its calls."""

    model_config = ConfigDict(extra="forbid")

    p99_ms: int = Field(
        gt=0, description="99th percentile round trip (request sent to reply read), milliseconds."
    )
    availability: float = Field(gt=0, le=1, description="Share of calls that succeed, 0..1.")


class Pricing(BaseModel):
    """What a call earns the unit (price) and what it costs the unit to serve (cost)."""

    model_config = ConfigDict(extra="forbid")

    price_per_call: Decimal = Field(ge=0)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    cost_per_call: Decimal = Field(ge=0)
    cost_per_cpu_second: Decimal = Field(default=Decimal("0"), ge=0)


class DeclaredError(BaseModel):
    """A business error code a capability may reply with."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    retryable: bool = False
    description: str = ""


class Contract(BaseModel):
    """The declared, versioned offer of one capability by one unit; pure data, JSON-able."""

    model_config = ConfigDict(extra="forbid")

    unit: str
    owner: str = Field(min_length=1)
    kind: Literal["internal", "partner"] = "internal"
    capability: str
    version: str
    description: str = ""
    request: dict[str, Any]
    reply: dict[str, Any]
    errors: list[DeclaredError] = Field(default_factory=list)
    side_effects: bool = False
    compensation: str | None = None
    supports_dry_run: bool = False
    compatibility: Literal["BACKWARD", "FORWARD", "FULL", "NONE"] = Field(
        default="BACKWARD",
        description="What a new minor version must stay compatible with (see mbs.contract.compat).",
    )
    sla: Sla
    pricing: Pricing

    @field_validator("unit")
    @classmethod
    def _unit_name(cls, value: str) -> str:
        if not _UNIT.match(value):
            raise ValueError(f"unit {value!r} must be lower-case letters, digits, '-' or '_'")
        return value

    @field_validator("capability", "compensation")
    @classmethod
    def _capability_name(cls, value: str | None) -> str | None:
        if value is not None and not _CAPABILITY.match(value):
            raise ValueError(f"capability {value!r} must look like 'domain.action'")
        return value

    @field_validator("request", "reply")
    @classmethod
    def _json_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            Draft202012Validator.check_schema(value)
        except SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "<root>"
            raise ValueError(f"not a valid JSON Schema at {where}: {exc.message}") from None
        if value.get("type") != "object":
            raise ValueError("must be a JSON Schema of type 'object' (one model in, one out)")
        return value

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not _SEMVER.match(value):
            raise ValueError(f"version {value!r} is not semver (MAJOR.MINOR.PATCH)")
        return value

    @property
    def major(self) -> int:
        return int(self.version.split(".", 1)[0])

    @property
    def key(self) -> str:
        """The registry key: `capability@version`, plus `/unit` for a second provider."""
        base = f"{self.capability}@{self.version}"
        return f"{base}/{self.provider}" if self.provider else base

    @property
    def provider(self) -> str | None:
        """None for the capability's home unit, else the unit's name (see request_topic)."""
        return None if self.unit == self.capability.split(".", 1)[0] else self.unit

    @property
    def request_topic(self) -> str:
        """`shipping.book.v1` for the home unit `shipping`; `shipping.book.v1.fastship` for a
        second provider, so each provider reads only its own requests (and ACLs can say so)."""
        return wire.request_topic(self.capability, self.major, self.provider)

    @property
    def reply_topic(self) -> str:
        return wire.reply_topic(self.unit)

    @property
    def dlq_topic(self) -> str:
        return f"{self.request_topic}.dlq"

    def declares(self, code: str) -> bool:
        return any(error.code == code for error in self.errors)


Req = TypeVar("Req", bound=BaseModel)
Rep = TypeVar("Rep", bound=BaseModel)


class ModelContract(Contract, Generic[Req, Rep]):
    """A contract authored in Python: the JSON data plus the pydantic models behind it."""

    _request_model: type[BaseModel] = PrivateAttr()
    _reply_model: type[BaseModel] = PrivateAttr()

    @property
    def request_model(self) -> type[BaseModel]:
        return self._request_model

    @property
    def reply_model(self) -> type[BaseModel]:
        return self._reply_model

    def as_contract(self) -> Contract:
        """The plain data contract, as published to the registry and to partners."""
        return Contract.model_validate(self.model_dump())


def declare(*, request: type[Req], reply: type[Rep], **fields: Any) -> ModelContract[Req, Rep]:
    """Declare a contract from its request and reply models plus the contract fields."""
    contract: ModelContract[Req, Rep] = ModelContract(
        request=request.model_json_schema(), reply=reply.model_json_schema(), **fields
    )
    contract._request_model = request
    contract._reply_model = reply
    return contract


def implement(
    contract: Contract, *, request: type[Req], reply: type[Rep]
) -> ModelContract[Req, Rep]:
    """Bind a unit's own models to a contract it received as data (how partners build)."""
    bound: ModelContract[Req, Rep] = ModelContract.model_validate(contract.model_dump())
    bound._request_model = request
    bound._reply_model = reply
    return bound
