"""Who offers what: every provider of every capability, as the registry knows them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mbs.contract import Contract
from mbs.contract.certification import is_certified


class Catalog:
    """Contracts by capability and unit; the in-house (home) provider listed first."""

    def __init__(self, contracts: Iterable[Contract] = ()) -> None:
        self._by_capability: dict[str, dict[str, Contract]] = {}
        self.certified: Mapping[str, Mapping[str, Any]] | None = None  # None: no gate
        self.update(contracts)

    def update(self, contracts: Iterable[Contract]) -> None:
        """Add or replace providers (a newer version of the same unit replaces the older)."""
        for contract in contracts:
            units = self._by_capability.setdefault(contract.capability, {})
            units[contract.unit] = contract
            home = [u for u, c in units.items() if c.provider is None]
            ordered = home + sorted(u for u in units if u not in home)
            self._by_capability[contract.capability] = {u: units[u] for u in ordered}

    def __contains__(self, capability: object) -> bool:
        return capability in self._by_capability

    def providers(self, capability: str) -> list[Contract]:
        return list(self._by_capability.get(capability, {}).values())

    def home(self, capability: str) -> Contract:
        """The default provider: the in-house unit if there is one."""
        return self.providers(capability)[0]

    def get(self, capability: str, unit: str) -> Contract | None:
        return self._by_capability.get(capability, {}).get(unit)

    def live(self, contract: Contract) -> bool:
        """May this provider get live traffic? Partners only once certified (when gated);
        an uncertified partner still gets shadow copies, which is how it earns trust."""
        if self.certified is None or contract.kind != "partner":
            return True
        return is_certified(self.certified, contract)

    def capabilities(self) -> list[str]:
        return sorted(self._by_capability)

    def contracts(self) -> list[Contract]:
        return [c for cap in self.capabilities() for c in self.providers(cap)]
