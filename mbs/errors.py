"""The exception tree of the platform: every error a user can hit says what to do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class MbsError(Exception):
    """Root of every platform error."""


class BrokerError(MbsError):
    """The local Kafka broker could not be fetched, started or stopped."""


class ContractViolation(MbsError):
    """A message or document does not honour its contract."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class _Registered(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def unit(self) -> str: ...


class _Reason(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def reason(self) -> str: ...


class ContractRefused(MbsError):
    """A new contract version breaks compatibility; `reasons` lists every break."""

    def __init__(self, contract: _Registered, reasons: Sequence[_Reason]) -> None:
        lines = "\n".join(f"  {r.path}: {r.reason}" for r in reasons)
        super().__init__(f"{contract.key} ({contract.unit}) refused:\n{lines}")
        self.contract = contract
        self.reasons = list(reasons)


class BusinessError(MbsError):
    """A declared business outcome (`card_declined`): replied to the caller, never retried
    by the unit (whether a caller may try again is the contract's `errors[].retryable`)."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


class StateError(MbsError):
    """A unit's state was used in a way that would break its atomicity."""


class ScaffoldRefused(MbsError):
    """The unit cannot be scaffolded as asked; the message says why and what to do."""


class JourneyDefinitionError(MbsError):
    """A journey definition file is invalid; the message names the file, step and reason."""


class JourneyInputError(MbsError):
    """The journey input lacks a field a step needs."""


class VersionConflict(MbsError):
    """A journey definition's version is not newer than the live one."""


class MalformedDefinition(JourneyDefinitionError):
    """A journey document that is not YAML or JSON at all (or uses what is refused, such as
    YAML aliases): nothing to check it against yet."""
