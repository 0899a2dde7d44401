"""What a journey run looks like from outside: its steps, its outcome and its bill."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

StepStatus = Literal["pending", "running", "ok", "business_error", "timeout", "failed", "skipped"]
RunStatus = Literal["running", "completed", "failed", "timed_out"]


class StepError(BaseModel):
    """Why a step did not succeed."""

    step: str
    code: str
    detail: str = ""


class StepRun(BaseModel):
    """One step of one run."""

    id: str
    capability: str
    unit: str = ""
    status: StepStatus = "pending"
    attempts: int = 0
    started_ms: float | None = Field(default=None, description="Offset from the journey start.")
    latency_ms: float | None = None
    handler_ms: float | None = None
    cost: Decimal = Decimal(0)
    price: Decimal = Decimal(0)
    output: dict[str, Any] | None = None
    error: StepError | None = None


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
    """One execution of one version of a journey."""

    run_id: str
    journey: str
    version: int
    status: RunStatus = "running"
    input: dict[str, Any]
    output: dict[str, Any] | None = None
    error: StepError | None = None
    steps: list[StepRun]
    latency_ms: float | None = None
    bill: Bill | None = None
