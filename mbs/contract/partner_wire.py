"""What a partner in any language must know of the wire, as data: every header with its format,
the platform's error codes, the dead-letter reasons and the size limit.

The AsyncAPI export publishes these tables and `tests/unit/test_partner_docs.py` checks them
against the kit's own code (`mbs.unit.server`, `mbs.unit.intake`, `gateway/calls.py`) and
against `contracts/published/PARTNERS.md`, so the documents cannot drift from what runs.
"""

from __future__ import annotations

from typing import Any

from mbs import wire as h
from mbs.contract.model import Contract

__all__ = [
    "DEAD_LETTER_HEADERS",
    "DEAD_LETTER_REASONS",
    "MAX_REQUEST_BYTES",
    "PASSTHROUGH",
    "PLATFORM_ERROR_TABLE",
    "REPLY_HEADERS",
    "REQUEST_HEADERS",
    "UNIT_GROUP_PREFIX",
    "Header",
    "contract_schema",
]

Header = tuple[str, str, dict[str, Any]]
"""(name, what it carries, the schema of its UTF-8 text value)"""

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
MAX_REQUEST_BYTES = 1_000_000  # a larger request body is dead-lettered `too_large`
UNIT_GROUP_PREFIX = "mbs.unit.{unit}."  # the consumer groups a unit's principal may use

_TEXT: dict[str, Any] = {"type": "string"}
_EPOCH_MS: dict[str, Any] = {"type": "string", "pattern": "^[0-9]{1,15}$"}
_DIGITS: dict[str, Any] = {"type": "string", "pattern": "^[0-9]+$"}
_FLAG: dict[str, Any] = {"type": "string", "enum": ["0", "1"]}
_PARTITION: dict[str, Any] = {"type": "string", "pattern": "^[0-9]{1,9}$"}
# A plain decimal of 0 or more: digits, an optional fraction; no sign, exponent or spaces.
_DECIMAL: dict[str, Any] = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"}

REQUEST_HEADERS: tuple[Header, ...] = (
    (h.MESSAGE_ID, "Required. The idempotency key: one answer per message id, final.", _TEXT),
    (h.CORRELATION_ID, "Required. Echo it on the reply; the caller matches by it.", _TEXT),
    (h.JOURNEY_ID, "The journey run; also the request's Kafka key. Copy it to the reply.", _TEXT),
    (h.JOURNEY, "The journey definition, `name@version`. Copy it to the reply.", _TEXT),
    (h.STEP, "The journey step that made the call. Copy it to the reply.", _TEXT),
    (h.ATTEMPT, "Attempt number of the step, from 1. Copy it to the reply.", _DIGITS),
    (
        h.DEADLINE,
        "Epoch milliseconds, 1-15 ASCII digits. Found after it: never start the work, answer "
        "`deadline_exceeded` and remember that answer for the message id.",
        _EPOCH_MS,
    ),
    (h.CALLER, "Who is calling: the gateway, a unit, the conformance kit.", _TEXT),
    (
        h.SHADOW,
        "`1`: a dry run; serve it without side effects, price 0, remember nothing (or answer "
        "`dry_run_unsupported`). `0` or absent: a real call. Copy it to the reply.",
        _FLAG,
    ),
    (
        h.REPLY_PARTITION,
        "The partition of your reply topic the caller reads (digits): write the reply there, "
        "key unchanged. Absent: the key picks the partition. A number your reply topic has no "
        "partition for: reply as if it were absent.",
        _PARTITION,
    ),
    (h.TRACEPARENT, "W3C trace context. Copy it to the reply.", _TEXT),
    ("tracestate", "W3C trace context, vendor part.", _TEXT),
    ("baggage", "W3C baggage.", _TEXT),
)

PASSTHROUGH = (h.JOURNEY_ID, h.JOURNEY, h.STEP, h.ATTEMPT, h.TRACEPARENT, h.SHADOW)
"""Request headers a reply carries back unchanged, when the request had them."""

_REQUEST_TEXT = {name: (text, schema) for name, text, schema in REQUEST_HEADERS}

REPLY_HEADERS: tuple[Header, ...] = (
    (h.MESSAGE_ID, "Required. A new unique id of this reply.", _TEXT),
    (h.CORRELATION_ID, "Required. The request's correlation id.", _TEXT),
    (h.UNIT, "Required. The unit that replied (only it may write its reply topic).", _TEXT),
    (
        h.REQUEST_ID,
        "The request's message id, on every final answer (done, a business error, "
        "`deadline_exceeded`): the unit remembers it and answers a repeat the same. Absent on "
        "answers that are not final (`invalid_request`, `unit_failed`, shadows).",
        _TEXT,
    ),
    (
        h.COST,
        "Required. What serving the call cost the unit, in the contract's currency, errors "
        "included: a decimal of 0 or more such as `0.0350`.",
        _DECIMAL,
    ),
    (
        h.PRICE,
        "Required. What the call earns the unit: the contract's price_per_call on success, "
        "`0` on any error and on a shadow. The gateway bills the contract's price, not this.",
        _DECIMAL,
    ),
    (h.HANDLER_MS, "Required. Time spent doing the work, milliseconds (`12.345`).", _DECIMAL),
    (
        h.ERROR,
        "Set on an error reply (the body is then `{}`): a code the contract declares or a "
        "platform code (x-platform-errors); any other code breaks the contract.",
        _TEXT,
    ),
    (h.ERROR_DETAIL, "Human-readable detail of the error, at most 500 characters.", _TEXT),
    *(
        (
            name,
            f"Copied from the request. {_REQUEST_TEXT[name][0].split('. ')[0]}.",
            _REQUEST_TEXT[name][1],
        )
        for name in PASSTHROUGH
    ),
)

DEAD_LETTER_HEADERS: tuple[Header, ...] = (
    *REQUEST_HEADERS,
    (h.ERROR, "Why it was dead-lettered: one of x-dead-letter-reasons.", _TEXT),
    (h.ERROR_DETAIL, "Human-readable detail of the reason, at most 1000 characters.", _TEXT),
    (h.UNIT, "The unit that dead-lettered it.", _TEXT),
    ("mbs-source-topic", "The topic the request was read from.", _TEXT),
    ("mbs-source-partition", "Its partition.", _DIGITS),
    ("mbs-source-offset", "Its offset.", _DIGITS),
)

# (code, retryable by the gateway, meaning); `gateway/calls.py` TECHNICAL are the retryable.
PLATFORM_ERROR_TABLE: tuple[tuple[str, bool, str], ...] = (
    (
        "invalid_request",
        False,
        "The request broke the contract (headers, JSON or schema); nothing was done. The "
        "request is also dead-lettered. Not final: not remembered.",
    ),
    (
        "deadline_exceeded",
        True,
        "Found after `mbs-deadline`; never started. Final: remembered for the message id. "
        "The gateway treats it as a technical failure (a new attempt, or failover).",
    ),
    (
        "unit_failed",
        True,
        "The work failed technically after the unit's own retries; nothing was done (rolled "
        "back). Not final: a repeat of the message id is served again.",
    ),
    (
        "dry_run_unsupported",
        False,
        "An `mbs-shadow: 1` request to a contract with supports_dry_run false.",
    ),
)

DEAD_LETTER_REASONS: tuple[tuple[str, str], ...] = (
    ("too_large", f"the body is over {MAX_REQUEST_BYTES:,} bytes"),
    (
        "bad_header",
        "a platform header (`mbs-*`, traceparent, tracestate, baggage) without a value, not "
        "UTF-8, repeated with different values; `mbs-deadline` not 1-15 ASCII digits; "
        "`mbs-shadow` neither `0` nor `1`; `mbs-reply-partition` not 1-9 ASCII digits",
    ),
    ("missing_header", "no `mbs-message-id` or no `mbs-correlation-id`"),
    ("not_json", "the body is not JSON (or not UTF-8, or nested too deeply)"),
    ("schema_invalid", "JSON that fails the contract's request schema"),
    ("handler_failed", "the work failed technically after retries (answered `unit_failed`)"),
    ("unreadable", "a record the Kafka client cannot decode at all (no bytes copied)"),
)


def platform_errors() -> list[dict[str, Any]]:
    """The platform error codes as the AsyncAPI's `x-platform-errors`."""
    return [
        {"code": code, "retryable": retryable, "description": text}
        for code, retryable, text in PLATFORM_ERROR_TABLE
    ]


def dead_letter_reasons() -> list[dict[str, str]]:
    """The dead-letter reasons as the AsyncAPI's `x-dead-letter-reasons`."""
    return [{"reason": reason, "description": text} for reason, text in DEAD_LETTER_REASONS]


def contract_schema() -> dict[str, Any]:
    """The JSON Schema of a contract file: one contract, or a list of them."""
    one = Contract.model_json_schema()
    defs = one.pop("$defs", {})
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "MBS contract file",
        "description": "One contract, or a list of contracts (a partner's file).",
        "$defs": {**defs, "Contract": one},
        "anyOf": [
            {"$ref": "#/$defs/Contract"},
            {"type": "array", "items": {"$ref": "#/$defs/Contract"}},
        ],
    }
