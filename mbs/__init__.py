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
from mbs.money import Money, PositiveMoney
from mbs.state import Table, UnitStore
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
    "Money",
    "PositiveMoney",
    "Pricing",
    "RetryPolicy",
    "Sla",
    "StepFailed",
    "StepTimeout",
    "Table",
    "Unit",
    "UnitStore",
    "declare",
    "dry_run",
    "implement",
]
