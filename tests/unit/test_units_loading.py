"""Every unit with a contract loads by name and serves exactly its declared capabilities."""

from __future__ import annotations

import pytest

from contracts import all_contracts
from ecosystem import ECOSYSTEM


def declared_capabilities() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for contract in all_contracts():
        out.setdefault(contract.unit, set()).add(contract.capability)
    return out


DECLARED = declared_capabilities()


def test_the_new_units_all_have_contracts() -> None:
    wanted = {"payments", "fraud", "shipping", "notifications", "fastship", "paylater"}
    assert wanted <= set(DECLARED)


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_load_unit_serves_exactly_the_declared_capabilities(name: str) -> None:
    unit = ECOSYSTEM.load_unit(name)
    assert unit.name == name
    served = [binding.contract.capability for binding in unit.bindings]
    assert sorted(served) == sorted(DECLARED[name])
