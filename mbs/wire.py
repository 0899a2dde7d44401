"""Header and topic names that cross process and company boundaries (fixed by DESIGN.md)."""

from __future__ import annotations

MESSAGE_ID = "mbs-message-id"
CORRELATION_ID = "mbs-correlation-id"
JOURNEY_ID = "mbs-journey-id"
JOURNEY = "mbs-journey"
STEP = "mbs-step"
ATTEMPT = "mbs-attempt"
DEADLINE = "mbs-deadline"
CALLER = "mbs-caller"
UNIT = "mbs-unit"
SHADOW = "mbs-shadow"
ERROR = "mbs-error"
ERROR_DETAIL = "mbs-error-detail"
COST = "mbs-cost"
PRICE = "mbs-price"
HANDLER_MS = "mbs-handler-ms"
TRACEPARENT = "traceparent"
REQUEST_ID = "mbs-request-id"  # on a reply: the request's message id, when the reply is final
# On a request: the partition of the unit's reply topic that the caller reads (digits).
REPLY_PARTITION = "mbs-reply-partition"

CONTRACTS_TOPIC = "mbs.contracts"
JOURNEY_STATE_TOPIC = "mbs.journeys.state"
JOURNEY_DEFS_TOPIC = "mbs.journeys.defs"


def request_topic(capability: str, major: int, provider: str | None = None) -> str:
    """`payments.charge` v1 -> `payments.charge.v1`; another provider gets its own suffix."""
    base = f"{capability}.v{major}"
    return f"{base}.{provider}" if provider else base


def reply_topic(unit: str) -> str:
    """The one topic a unit writes its replies to."""
    return f"mbs.replies.{unit}"


# The error codes every unit may answer besides those its contract declares (`mbs-error`),
# and what each means for the caller. Any other undeclared code breaks the contract.
PLATFORM_ERRORS = {
    "invalid_request": "the request broke the contract; nothing was done (not retryable)",
    "deadline_exceeded": "arrived after `mbs-deadline`; never started (technical)",
    "unit_failed": "the handler failed after retries; nothing was done (technical, retryable)",
    "dry_run_unsupported": "an `mbs-shadow: 1` request to a contract without dry run",
}
