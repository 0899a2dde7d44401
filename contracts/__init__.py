"""The declared contracts of the ecosystem, one module per unit."""

from __future__ import annotations

from typing import Any

from contracts.inventory import RELEASE, RESERVE
from contracts.pricing import QUOTE
from mbs.contract import ModelContract

ECOSYSTEM: list[ModelContract[Any, Any]] = [QUOTE, RESERVE, RELEASE]


def by_capability() -> dict[str, ModelContract[Any, Any]]:
    """The ecosystem's contracts keyed by capability."""
    return {contract.capability: contract for contract in ECOSYSTEM}


__all__ = ["ECOSYSTEM", "by_capability"]
