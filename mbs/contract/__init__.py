"""Contracts: the model (schemas, errors, SLA, pricing, money), compatibility between
versions, the registry on `mbs.contracts`, AsyncAPI export, and reading certifications.

The conformance kit (`mbs.contract.conformance`) is imported on its own: it draws test data
with hypothesis, which no serving process needs.
"""

from mbs.contract.asyncapi import asyncapi_document, export
from mbs.contract.certification import Certifications, certifications, is_certified
from mbs.contract.compat import Incompatibility, can_read, check_contract, check_schema
from mbs.contract.model import (
    Contract,
    DeclaredError,
    ModelContract,
    Pricing,
    Sla,
    declare,
    implement,
)
from mbs.contract.money import MONEY_PATTERN, POSITIVE_MONEY_PATTERN, Money, PositiveMoney
from mbs.contract.registry import Registry, RegistryView, load_contract_file

__all__ = [
    "MONEY_PATTERN",
    "POSITIVE_MONEY_PATTERN",
    "Certifications",
    "Contract",
    "DeclaredError",
    "Incompatibility",
    "ModelContract",
    "Money",
    "PositiveMoney",
    "Pricing",
    "Registry",
    "RegistryView",
    "Sla",
    "asyncapi_document",
    "can_read",
    "certifications",
    "check_contract",
    "check_schema",
    "declare",
    "export",
    "implement",
    "is_certified",
    "load_contract_file",
]
