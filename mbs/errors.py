"""The exception tree of the platform: every error a user can hit says what to do."""

from __future__ import annotations


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


class BusinessError(MbsError):
    """A declared business outcome (`card_declined`): replied to the caller, never retried."""

    def __init__(self, code: str, detail: str = "", *, retryable: bool = False) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
        self.retryable = retryable


class JourneyDefinitionError(MbsError):
    """A journey definition file is invalid; the message names the file, step and reason."""


class StepFailed(MbsError):
    """A journey step did not produce a usable reply."""

    def __init__(self, step: str, reason: str, *, retryable: bool = False) -> None:
        super().__init__(f"step {step!r} failed: {reason}")
        self.step = step
        self.reason = reason
        self.retryable = retryable


class StepTimeout(StepFailed):
    """A step's reply did not arrive before its deadline."""

    def __init__(self, step: str, timeout_s: float) -> None:
        super().__init__(step, f"no reply within {timeout_s:g}s", retryable=True)
        self.timeout_s = timeout_s
