"""Provider choice for a step: fixed, cheapest (contract price), fastest (observed), weighted,
failover; the order returned is also the failover order."""

from __future__ import annotations

import hashlib
import random

from gateway.catalog import Catalog
from gateway.definition import StepDefinition
from mbs.contract import Contract

EWMA_WEIGHT = 0.2


class ProviderChooser:
    """Orders a step's candidate providers by the step's policy."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.latency_ms: dict[tuple[str, str], float] = {}

    def observe(self, capability: str, unit: str, latency_ms: float) -> None:
        """Feed a measured round trip into the `fastest` policy's moving average."""
        key = (capability, unit)
        before = self.latency_ms.get(key)
        self.latency_ms[key] = (
            latency_ms if before is None else (before + EWMA_WEIGHT * (latency_ms - before))
        )

    def candidates(self, step: StepDefinition) -> list[Contract]:
        """The units a step may use: those it names, else only the home provider."""
        named = step.providers.units
        if not named:
            offered = [c for c in self.catalog.providers(step.capability) if self.catalog.live(c)]
            return offered[:1]
        found = [self.catalog.get(step.capability, unit) for unit in named]
        return [c for c in found if c is not None and self.catalog.live(c)]

    def order(self, step: StepDefinition, run_id: str) -> list[Contract]:
        found = self.candidates(step)
        policy = step.providers.policy
        if policy == "cheapest":
            return sorted(found, key=lambda c: c.pricing.price_per_call)
        if policy == "fastest":  # unmeasured providers first, so each gets measured
            return sorted(found, key=lambda c: self.latency_ms.get((c.capability, c.unit), 0.0))
        if policy == "weighted":
            return self._weighted(found, step, run_id)
        return found

    def _weighted(self, found: list[Contract], step: StepDefinition, run_id: str) -> list[Contract]:
        weights = [step.providers.weights.get(c.unit, 0.0) for c in found]
        if not any(weights):
            return found
        seed = int.from_bytes(hashlib.sha256(f"{run_id}:{step.id}".encode()).digest()[:8], "big")
        first = random.Random(seed).choices(found, weights=weights)[0]
        return [first, *[c for c in found if c is not first]]
