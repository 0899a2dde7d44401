"""Micro Business Services: the platform kit for Micro Business Units."""

from mbs.contract import (
    Contract,
    DeclaredError,
    ModelContract,
    Pricing,
    Sla,
    declare,
    implement,
)
from mbs.errors import (
    BrokerError,
    BusinessError,
    ContractViolation,
    JourneyDefinitionError,
    MbsError,
    StepFailed,
    StepTimeout,
)
from mbs.unit import Binding, RetryPolicy, Unit, dry_run

__all__ = [
    "Binding",
    "BrokerError",
    "BusinessError",
    "Contract",
    "ContractViolation",
    "DeclaredError",
    "JourneyDefinitionError",
    "MbsError",
    "ModelContract",
    "Pricing",
    "RetryPolicy",
    "Sla",
    "StepFailed",
    "StepTimeout",
    "Unit",
    "declare",
    "dry_run",
    "implement",
]
