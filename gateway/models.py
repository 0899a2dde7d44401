"""What a journey run looks like from outside: its steps, its outcome and its bill."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

StepStatus = Literal["pending", "running", "ok", "business_error", "timeout", "failed", "skipped"]
RunStatus = Literal["running", "compensating", "completed", "failed", "timed_out"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "timed_out"})


class StepError(BaseModel):
    """Why a step did not succeed."""

    step: str
    code: str
    detail: str = ""


class Call(BaseModel):
    """One request/reply exchange with a unit (an attempt, a compensation, a shadow copy)."""

    unit: str
    capability: str
    message_id: str
    outcome: str = "pending"
    started_ms: float | None = Field(default=None, description="Offset from the journey start.")
    latency_ms: float | None = None
    timeout_s: float | None = None
    cost: Decimal = Decimal(0)
    price: Decimal = Decimal(0)
    error: str | None = None


class ShadowResult(BaseModel):
    """How a shadow provider's dry-run reply compared with the primary's."""

    unit: str
    agreement: Literal["agree", "disagree"]
    differences: list[str] = Field(default_factory=list)
    latency_ms: float | None = None
    price: Decimal = Decimal(0)


class StepRun(BaseModel):
    """One step of one run."""

    id: str
    capability: str
    unit: str = Field(default="", description="The provider that served (or last tried).")
    status: StepStatus = "pending"
    attempts: int = 0
    started_ms: float | None = Field(default=None, description="Offset from the journey start.")
    latency_ms: float | None = None
    handler_ms: float | None = None
    cost: Decimal = Decimal(0)
    price: Decimal = Decimal(0)
    output: dict[str, Any] | None = None
    error: StepError | None = None
    finished_seq: int | None = Field(default=None, description="Order of completion.")
    calls: list[Call] = Field(default_factory=list)
    compensation: Call | None = None
    shadow: ShadowResult | None = None


class StepLine(BaseModel):
    """A step's share of a bill."""

    step: str
    unit: str
    price: Decimal
    cost: Decimal
    latency_ms: float


class UnitLine(BaseModel):
    """A unit's share of a bill."""

    unit: str
    owner: str
    calls: int
    price: Decimal
    cost: Decimal
    latency_ms: float


class Bill(BaseModel):
    """What a journey cost: charged by the units (price), spent by them (cost), and time."""

    currency: str
    total_price: Decimal
    total_cost: Decimal
    latency_ms: float
    by_step: list[StepLine]
    by_unit: list[UnitLine]


class JourneyRun(BaseModel):
    """One execution of one version of a journey; the record kept in `mbs.journeys.state`."""

    run_id: str
    journey: str
    version: int
    status: RunStatus = "running"
    input: dict[str, Any]
    output: dict[str, Any] | None = None
    error: StepError | None = None
    compensated: bool = False
    steps: list[StepRun]
    created_ms: int = Field(description="Epoch milliseconds.")
    deadline_ms: int = Field(description="Epoch milliseconds by which the journey must end.")
    revision: int = Field(default=0, description="Bumped at every state change.")
    trace: dict[str, str] = Field(
        default_factory=dict, description="The journey span's trace context (traceparent)."
    )
    latency_ms: float | None = None
    bill: Bill | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL
