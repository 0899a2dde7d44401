"""What a journey run looks like from outside: its steps, its outcome and its bill."""

from __future__ import annotations

import copy
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema
from pydantic.config import JsonDict

from mbs.contract.model import _CAPABILITY, _SEMVER, _UNIT, Contract, Pricing

StepStatus = Literal[
    "pending", "running", "ok", "business_error", "timeout", "failed", "skipped", "cancelled"
]
RunStatus = Literal[
    "running", "compensating", "completed", "failed", "timed_out", "compensation_failed"
]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "timed_out", "compensation_failed"})
# What the engine knows of a call's side effect: `none` (pure, refused or never done),
# `unknown` (sent, no final answer yet), `done`, `undone`.
Effect = Literal["none", "unknown", "done", "undone"]
# What is shown of a secret input field, and what the journey log keeps of it once its run is
# finished (gateway/secrets.py).
REDACTED = "***"


def rewrite(data: dict[str, Any], path: str, change: Callable[[Any], Any]) -> None:
    """Replace the value at a dotted path of `data`, in place, by `change(value)`, if there."""
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and last in node:
        node[last] = change(node[last])


class StepError(BaseModel):
    """Why a step did not succeed."""

    step: str
    code: str
    detail: str = ""


NOT_SENT = "not sent: the run's deadline had passed"  # a Call's `detail`, never asked


class Call(BaseModel):
    """One request/reply exchange with a unit (an attempt, a compensation, a shadow copy).

    A side-effecting call is saved before it is sent (`effect: unknown`), so whoever resumes
    the run knows it may have happened and settles it: re-sends the same message id with the
    same deadline, and the unit's final answer says whether it was done."""

    unit: str
    capability: str
    message_id: str
    outcome: str = "pending"
    deadline_ms: int | None = Field(default=None, description="The `mbs-deadline` sent.")
    effect: Effect = "none"
    done_seq: int | None = Field(default=None, description="Order in which effects were done.")
    output: dict[str, Any] | None = Field(
        default=None, description="The reply of a side-effecting call, kept to undo it."
    )
    undos: list[Call] = Field(default_factory=list, description="Attempts to undo this call.")
    started_ms: float | None = Field(default=None, description="Offset from the journey start.")
    latency_ms: float | None = None
    timeout_s: float | None = None
    cost: Decimal = Decimal(0)
    price: Decimal = Decimal(0)
    error: str | None = None
    detail: str = ""
    handler_ms: float | None = None
    used: bool = Field(default=False, description="The step's output is this call's reply.")


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
    providers: list[str] = Field(
        default_factory=list, description="Provider order, fixed when the step first starts."
    )
    calls: list[Call] = Field(default_factory=list)
    compensation: Call | None = Field(
        default=None, description="The last undo of the call whose output the step used."
    )
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
    unsettled: list[str] = Field(
        default_factory=list,
        description="Message ids of calls whose outcome is still being asked for (a provider "
        "that does not answer); the run's outcome is known, its accounting is not finished.",
    )
    parked: list[str] = Field(
        default_factory=list,
        description="Message ids of side effects that could not be settled or undone: an "
        "operator's to resolve (status `compensation_failed`).",
    )
    steps: list[StepRun]
    created_ms: int = Field(description="Epoch milliseconds.")
    deadline_ms: int = Field(description="Epoch milliseconds by which the journey must end.")
    revision: int = Field(default=0, description="Bumped at every state change.")
    trace: dict[str, str] = Field(
        default_factory=dict, description="The journey span's trace context (traceparent)."
    )
    latency_ms: float | None = None
    bill: Bill | None = None
    secrets: list[str] = Field(
        default_factory=list,
        description="Input fields (dotted paths) that flow into a request field a contract "
        "marks `writeOnly`: kept encrypted while the run may still send them, then dropped; "
        f"always shown as {REDACTED!r}.",
    )

    def public(self) -> JourneyRun:
        """The run as it may be shown (every HTTP response): each secret input field as
        `***`, never its value nor its ciphertext. The run itself is left as it is."""
        if not self.secrets:
            return self
        shown = self.model_copy(update={"input": copy.deepcopy(self.input)})
        shown.forget_secrets()
        return shown

    def forget_secrets(self) -> None:
        """Drop every secret input field for good: the run will send nothing that needs it."""
        for path in self.secrets:
            rewrite(self.input, path, lambda _: REDACTED)

    @property
    def decided(self) -> bool:
        """The outcome is known (what the caller is told)."""
        return self.status in TERMINAL

    @property
    def finished(self) -> bool:
        """Decided, and every side effect accounted for: nothing left to do for the run."""
        return self.status in TERMINAL and not self.unsettled


# What Contract's validators accept, said in the schema, so that what `POST /contracts`
# documents is what it takes (its validators stay the judges: the checks are the same).
_AMOUNT = WithJsonSchema(
    {
        "anyOf": [
            {"type": "number", "minimum": 0},
            {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
        ],
        "description": 'A non-negative decimal, best as a string such as `"0.40"`.',
    }
)
_OBJECT_SCHEMA: JsonDict = {
    "required": ["type"],
    "properties": {"type": {"const": "object"}},
    "description": "A JSON Schema (2020-12) of `type: object`: one model in, one model out.",
}


class PricingOffer(Pricing):
    """Pricing as a contract offered over HTTP states it."""

    price_per_call: Annotated[Decimal, Field(ge=0), _AMOUNT]
    cost_per_call: Annotated[Decimal, Field(ge=0), _AMOUNT]
    cost_per_cpu_second: Annotated[Decimal, Field(ge=0), _AMOUNT] = Decimal("0")


class ContractOffer(Contract):
    """A contract as `POST /contracts` takes it (one, or a list of them): a Contract whose
    schema also states the formats its validators enforce."""

    unit: str = Field(pattern=_UNIT.pattern, description="Lower-case letters, digits, - or _.")
    capability: str = Field(pattern=_CAPABILITY.pattern, description="`domain.action`.")
    compensation: str | None = Field(default=None, pattern=_CAPABILITY.pattern)
    version: str = Field(pattern=_SEMVER.pattern, description="Semver: MAJOR.MINOR.PATCH.")
    request: dict[str, Any] = Field(json_schema_extra=_OBJECT_SCHEMA)
    reply: dict[str, Any] = Field(json_schema_extra=_OBJECT_SCHEMA)
    pricing: PricingOffer
