"""The one backoff policy of the platform: a unit retrying a failed handler, the gateway
retrying a step or pursuing an undo all wait `first_s`, doubling, at most `max_s`."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff, capped."""

    first_s: float
    max_s: float = math.inf

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number `attempt` (the first try is 1)."""
        return float(min(self.max_s, self.first_s * 2 ** (attempt - 1)))
