"""Wires the fraud unit: the risk model behind fraud.score."""

from __future__ import annotations

from contracts.fraud import SCORE
from mbs import Binding, Unit
from services.fraud.handlers import RiskModel


def build(model: RiskModel | None = None) -> Unit:
    return Unit("fraud", [Binding(SCORE, (model or RiskModel()).score)])
