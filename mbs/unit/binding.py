"""What a unit is made of: each capability's contract with the handler that serves it, and
how a technical failure is retried."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from mbs.backoff import Backoff
from mbs.contract.model import ModelContract

Handler = Callable[[Any], Awaitable[BaseModel]]


@dataclass(frozen=True)
class Binding:
    """One capability of a unit: its contract and the handler that serves it."""

    contract: ModelContract[Any, Any]
    handler: Handler


@dataclass(frozen=True)
class RetryPolicy:
    """How often a technical failure is retried before the request is dead-lettered."""

    attempts: int = 3
    first_backoff_s: float = 0.05

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.first_backoff_s)
