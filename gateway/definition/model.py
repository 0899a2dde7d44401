"""The journey model: a definition's steps, their providers, retries, conditions and undo."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.definition.expressions import Condition

Policy = Literal["fixed", "cheapest", "fastest", "weighted", "failover"]


class Retry(BaseModel):
    """How often a step is tried when it times out or fails retryably."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(default=1, ge=1, le=10)
    backoff_ms: int = Field(default=100, ge=0, le=60_000)


class Providers(BaseModel):
    """Which units may serve a step, and how one is chosen."""

    model_config = ConfigDict(extra="forbid")

    policy: Policy = "fixed"
    units: list[str] = Field(
        default_factory=list, description="Candidates in order; empty: the in-house provider."
    )
    weights: dict[str, float] = Field(default_factory=dict)
    failover: bool = Field(default=True, description="On timeout or failure, try the next one.")
    shadow: str | None = Field(default=None, description="Gets dry-run copies, never used.")


class Compensation(BaseModel):
    """The call that undoes a completed step when a later one fails (saga)."""

    model_config = ConfigDict(extra="forbid")

    capability: str | None = Field(default=None, description="Default: the contract's.")
    input: dict[str, Any] = Field(default_factory=dict)


class StepDefinition(BaseModel):
    """One call of a capability within a journey."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    capability: str
    input: dict[str, Any] = Field(default_factory=dict)
    after: list[str] = Field(default_factory=list)
    when: str | None = Field(default=None, description="Run only if this condition holds.")
    timeout: float | None = Field(default=None, gt=0, description="Seconds to wait for a reply.")
    retry: Retry = Field(default_factory=Retry)
    compensate: Compensation | None = None
    providers: Providers = Field(default_factory=Providers)

    @model_validator(mode="after")
    def _valid_condition(self) -> StepDefinition:
        if self.when is not None:
            Condition.parse(self.when)
        return self

    @property
    def condition(self) -> Condition | None:
        return None if self.when is None else Condition.parse(self.when)


class JourneyDefinition(BaseModel):
    """A named, versioned composition of steps (a DAG through `after`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    version: int = Field(ge=1)
    description: str = ""
    timeout: float = Field(default=30.0, gt=0, description="Deadline of the whole journey, s.")
    steps: list[StepDefinition] = Field(min_length=1)
    output: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_steps(self) -> JourneyDefinition:
        ids = [step.id for step in self.steps]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"step ids must be unique; repeated: {dupes}")
        return self

    def step(self, step_id: str) -> StepDefinition:
        return next(step for step in self.steps if step.id == step_id)

    def graph(self) -> dict[str, set[str]]:
        return {step.id: set(step.after) for step in self.steps}
