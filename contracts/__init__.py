"""The declared contracts of the ecosystem: one module per in-house unit, JSON for partners."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from contracts.fraud import SCORE
from contracts.inventory import RELEASE, RESERVE
from contracts.notifications import SEND
from contracts.payments import CHARGE, REFUND
from contracts.pricing import QUOTE
from contracts.shipping import BOOK, CANCEL
from mbs import Contract, ModelContract

PARTNERS_DIR = Path(__file__).parent / "partners"

ECOSYSTEM: list[ModelContract[Any, Any]] = [
    QUOTE,
    RESERVE,
    RELEASE,
    SCORE,
    CHARGE,
    REFUND,
    BOOK,
    CANCEL,
    SEND,
]


@cache
def partner_contracts(company: str) -> tuple[Contract, ...]:
    """The contracts a partner submitted, as JSON in contracts/partners/<company>.json."""
    raw = json.loads((PARTNERS_DIR / f"{company}.json").read_text())
    return tuple(Contract.model_validate(item) for item in raw)


def partners() -> list[str]:
    """The partner companies with a contract file."""
    return sorted(path.stem for path in PARTNERS_DIR.glob("*.json"))


def all_contracts() -> list[Contract]:
    """Every contract of the ecosystem, in-house first, then partners'."""
    found: list[Contract] = [c.as_contract() for c in ECOSYSTEM]
    for company in partners():
        found += partner_contracts(company)
    return found


__all__ = [
    "ECOSYSTEM",
    "all_contracts",
    "partner_contracts",
    "partners",
]
