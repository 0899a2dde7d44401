"""Micro Business Services: the platform kit for Micro Business Units.

The public face for units, contracts and the ecosystem module; the layers below it are
`mbs.contract`, `mbs.kafka`, `mbs.telemetry`, `mbs.unit`, `mbs.broker` and `mbs.cli`, and test
helpers live in `mbs.testing`.
"""

from mbs import wire
from mbs.contract import (
    Contract,
    DeclaredError,
    ModelContract,
    Money,
    PositiveMoney,
    Pricing,
    Sla,
    declare,
    implement,
)
from mbs.errors import (
    BrokerError,
    BusinessError,
    ContractRefused,
    ContractViolation,
    JourneyDefinitionError,
    MbsError,
)
from mbs.unit import Binding, Ecosystem, RetryPolicy, Table, Unit, UnitStore, dry_run

__all__ = [
    "Binding",
    "BrokerError",
    "BusinessError",
    "Contract",
    "ContractRefused",
    "ContractViolation",
    "DeclaredError",
    "Ecosystem",
    "JourneyDefinitionError",
    "MbsError",
    "ModelContract",
    "Money",
    "PositiveMoney",
    "Pricing",
    "RetryPolicy",
    "Sla",
    "Table",
    "Unit",
    "UnitStore",
    "declare",
    "dry_run",
    "implement",
    "wire",
]
