"""The conformance kit: does a running unit honour its contracts? (`mbs contracts verify`)

Requests drawn from each contract's request schema (valid samples, edge cases, broken ones)
go over Kafka as any caller sends them; each reply is judged against the reply schema and the
declared errors, and the p99 against the SLA (measured as the round trip, send to reply, not
the unit's `mbs-handler-ms`). Then the final answers (`conformance_final`): a request past its
deadline is refused, never done, and a repeat gets the same answer. A unit that passes can be
recorded as certified on the compacted topic `mbs.certifications` (read back by
`mbs.contract.certification`, which needs none of the kit's test-data machinery).
"""

from __future__ import annotations

import asyncio
import json
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import HypothesisDeprecationWarning
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator
from rich.table import Table

from mbs.contract.certification import (
    CERTIFICATIONS_TOPIC,
    certification_key,
    fingerprint,
)
from mbs.contract.conformance_final import Violation, check_final_answers, misrouted
from mbs.contract.model import Contract
from mbs.errors import MbsError
from mbs.kafka.admin import ensure_topics
from mbs.kafka.compacted import COMPACTED
from mbs.kafka.connection import Connection
from mbs.kafka.rpc import Reply, Requester

CALLER = "mbs-conformance"
INVALID_REQUEST = "invalid_request"
EXTRA_FIELD = "mbs_conformance_extra"
RANDOM_IN_STRATEGY = "Do not use the `random` module inside strategies"
SUMMARY_COLUMNS = (
    "capability",
    "version",
    "sent",
    "passed",
    "violations",
    "p50 ms",
    "p99 ms",
    "SLA p99 ms",
)
# The first wrong value that breaks the schema is used; objects first, since no lax parser
# turns an object into a string or a number.
WRONG_VALUES: tuple[tuple[str, Any], ...] = (
    ("object", {"unexpected": "object"}),
    ("string", "unexpected"),
    ("array", ["unexpected"]),
    ("integer", 12345),
)


@dataclass(frozen=True)
class Case:
    """One request the kit sends; `valid` says whether the contract obliges the unit to serve it."""

    name: str
    body: bytes
    valid: bool


def _percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile; 0 when nothing was measured."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass
class CapabilityResult:
    """What the kit saw for one capability of the unit."""

    capability: str
    version: str
    sla_p99_ms: int
    sent: int = 0
    passed: int = 0
    violations: list[Violation] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.sent > 0 and not self.violations

    @property
    def p50_ms(self) -> float:
        return _percentile(self.latencies_ms, 0.50)

    @property
    def p99_ms(self) -> float:
        return _percentile(self.latencies_ms, 0.99)


@dataclass
class Report:
    """The verdict on one unit: a result per capability; `passed` only with no violation."""

    unit: str
    samples: int
    results: list[CapabilityResult]

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(result.ok for result in self.results)

    @property
    def violations(self) -> list[Violation]:
        return [v for result in self.results for v in result.violations]

    @property
    def p50_ms(self) -> float:
        return _percentile([ms for r in self.results for ms in r.latencies_ms], 0.50)

    @property
    def p99_ms(self) -> float:
        return _percentile([ms for r in self.results for ms in r.latencies_ms], 0.99)


# --- the requests: drawn from the request schema --------------------------------------------


def _draw(schema: dict[str, Any], count: int) -> list[Any]:
    """`count` distinct instances of `schema`, the same ones on every run (derandomized)."""
    found: dict[str, Any] = {}

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(from_schema(schema))
    def collect(instance: Any) -> None:
        found.setdefault(json.dumps(instance, sort_keys=True), instance)

    with warnings.catch_warnings():
        # Hypothesis compares the global `random` state around each draw; this runs in a
        # worker thread while the event loop's Kafka clients (aiokafka picks brokers at
        # random) change that state, which is not the strategy's doing.
        warnings.filterwarnings("ignore", RANDOM_IN_STRATEGY, HypothesisDeprecationWarning)
        collect()
    return list(found.values())[:count]


def _body(instance: Any) -> bytes:
    return json.dumps(instance).encode()


def _without(document: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != name}


def _boundaries(prop: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Values at the edges a property's schema allows."""
    kind = prop.get("type")
    if kind == "string":
        for key in ("minLength", "maxLength"):
            if key in prop:
                yield f"at {key} {prop[key]}", "x" * prop[key]
    if kind not in {"integer", "number"}:
        return
    bounds = {"minimum": prop.get("minimum"), "maximum": prop.get("maximum")}
    if kind == "integer" and prop.get("exclusiveMinimum") is not None:
        bounds["minimum"] = math.floor(prop["exclusiveMinimum"]) + 1
    if kind == "integer" and prop.get("exclusiveMaximum") is not None:
        bounds["maximum"] = math.ceil(prop["exclusiveMaximum"]) - 1
    for name, value in bounds.items():
        if value is not None:
            yield f"= {name} {value}", int(value) if kind == "integer" else float(value)


def _edge_cases(schema: dict[str, Any], base: dict[str, Any]) -> list[Case]:
    """Valid requests at the edges: optional fields left out, bounds hit exactly."""
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    optional = [name for name in properties if name not in required and name in base]
    found = [(f"edge: optional {name!r} omitted", _without(base, name)) for name in optional]
    if len(optional) > 1:
        found.append(("edge: only required fields", {k: base[k] for k in base if k in required}))
    for name, prop in properties.items():
        for label, value in _boundaries(prop):
            found.append((f"edge: {name!r} {label}", {**base, name: value}))
    validator = Draft202012Validator(schema)
    return [Case(name, _body(doc), True) for name, doc in found if validator.is_valid(doc)]


def _invalid_cases(schema: dict[str, Any], base: dict[str, Any]) -> list[Case]:
    """Requests the contract forbids: each must be refused with `invalid_request`."""
    validator = Draft202012Validator(schema)
    required: list[str] = schema.get("required", [])
    found = [(f"invalid: required {name!r} missing", _without(base, name)) for name in required]
    for name in schema.get("properties", {}):
        for kind, value in WRONG_VALUES:
            if not validator.is_valid({**base, name: value}):
                found.append((f"invalid: {name!r} is a wrong type ({kind})", {**base, name: value}))
                break
    if schema.get("additionalProperties") is False:
        found.append((f"invalid: undeclared field {EXTRA_FIELD!r}", {**base, EXTRA_FIELD: 1}))
    cases = [Case(name, _body(doc), False) for name, doc in found if not validator.is_valid(doc)]
    return [
        *cases,
        Case("invalid: a JSON array, not an object", b"[]", False),
        Case("invalid: not JSON", b"{not json", False),
    ]


def plan(contract: Contract, samples: int) -> list[Case]:
    """Every request the kit sends for one contract: samples, edge cases, invalid ones."""
    schema = contract.request
    drawn = _draw(schema, samples)
    # one request with every optional field present, so each can be left out in turn
    full = _draw({**schema, "required": sorted(schema.get("properties", {}))}, 1)
    base = (full or drawn or [{}])[0]
    valid = [Case(f"valid sample #{i}", _body(d), True) for i, d in enumerate(drawn, 1)]
    return valid + _edge_cases(schema, base) + _invalid_cases(schema, base)


# --- the replies: judged against the reply schema, the declared errors and the SLA -----------


def _judge(contract: Contract, case: Case, reply: Reply) -> tuple[str, str] | None:
    """`(expected, got)` when the reply breaks the contract, else None."""
    if (wrong := misrouted(reply)) is not None:
        return wrong
    if not case.valid:
        if reply.error == INVALID_REQUEST:
            return None
        got = f"error {reply.error!r}: {reply.error_detail}" if reply.error else "a success reply"
        return f"mbs-error {INVALID_REQUEST!r}", got
    declared = ", ".join(e.code for e in contract.errors) or "none declared"
    expected = f"a reply valid against the reply schema, or a declared error ({declared})"
    if reply.error is None:
        problem = _body_problem(contract, reply.body)
    elif reply.error == INVALID_REQUEST:
        problem = f"a schema-valid request refused as invalid: {reply.error_detail}"
    elif not contract.declares(reply.error):
        problem = f"undeclared error {reply.error!r}: {reply.error_detail}"
    else:
        problem = None
    return None if problem is None else (expected, problem)


def _body_problem(contract: Contract, raw: bytes) -> str | None:
    """Why a success reply's body breaks the reply schema, or None when it honours it."""
    try:
        body = json.loads(raw)
    except ValueError:
        return f"a reply body that is not JSON: {raw[:80]!r}"
    problems = sorted(Draft202012Validator(contract.reply).iter_errors(body), key=str)
    if not problems:
        return None
    detail = "; ".join(f"{p.json_path}: {p.message}" for p in problems[:3])
    return f"a reply that fails the reply schema: {detail}"


async def _check(
    requester: Requester, contract: Contract, cases: list[Case], timeout_s: float
) -> CapabilityResult:
    """Send every case to the unit and judge the replies."""
    result = CapabilityResult(contract.capability, contract.version, contract.sla.p99_ms)
    for number, case in enumerate(cases):
        result.sent += 1
        try:
            reply = await requester.request(contract.request_topic, case.body, timeout_s=timeout_s)
        except TimeoutError:
            silent = f"no reply within {timeout_s:g}s"
            result.violations.append(Violation(contract.capability, case.name, "a reply", silent))
            if result.sent == 1:  # nobody is serving: do not wait out every other case too
                result.violations.append(_not_sent(contract, len(cases) - number - 1))
                break
            continue
        if case.valid and number > 0:  # the first request pays for connections: not timed
            result.latencies_ms.append(reply.latency_ms)
        broken = _judge(contract, case, reply)
        if broken is None:
            result.passed += 1
        else:
            result.violations.append(Violation(contract.capability, case.name, *broken))
    if result.p99_ms > contract.sla.p99_ms:
        result.violations.append(_too_slow(contract, result.p99_ms))
    return result


def _too_slow(contract: Contract, measured_ms: float) -> Violation:
    sla = contract.sla.p99_ms
    return Violation(
        contract.capability,
        "latency over the valid requests",
        f"p99 <= {sla} ms",
        f"SLA p99 {sla} ms exceeded: measured {measured_ms:.1f} ms",
    )


def _not_sent(contract: Contract, left: int) -> Violation:
    return Violation(
        contract.capability,
        f"{left} more cases",
        f"a unit serving {contract.request_topic}",
        "not sent: the first request got no reply; is the unit running on this broker?",
    )


async def verify(
    contracts: list[Contract], connection: Connection, *, samples: int = 30, timeout_s: float = 5.0
) -> Report:
    """Check the running unit behind `contracts` against each of them, one request at a time."""
    if not contracts:
        raise MbsError("no contracts to verify: name a unit with a contract, or a contract file")
    plans = await asyncio.to_thread(lambda: [plan(c, samples) for c in contracts])
    await ensure_topics(connection, [c.request_topic for c in contracts])
    requester = Requester(connection, CALLER)
    await requester.start({c.reply_topic for c in contracts})
    try:
        results = [
            await _check(requester, contract, cases, timeout_s)
            for contract, cases in zip(contracts, plans, strict=True)
        ]
        for result, contract, cases in zip(results, contracts, plans, strict=True):
            await check_final_answers(requester, contract, cases, timeout_s, result)
    finally:
        await requester.stop()
    unit = ", ".join(sorted({c.unit for c in contracts}))
    return Report(unit=unit, samples=samples, results=results)


async def record_certification(
    report: Report,
    contracts: list[Contract],
    connection: Connection,
    *,
    topic: str = CERTIFICATIONS_TOPIC,
) -> list[str]:
    """Mark each contract certified; refused unless the report passed. Returns the keys."""
    if not report.passed:
        raise MbsError(f"{report.unit} not certified: {len(report.violations)} violations")
    results = {r.capability: r for r in report.results}
    await ensure_topics(connection, [topic], partitions=1, config=COMPACTED)
    producer = AIOKafkaProducer(**connection.options(), acks="all")
    await producer.start()
    try:
        for contract in contracts:
            record = {
                "unit": contract.unit,
                "capability": contract.capability,
                "version": contract.version,
                "certified_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "samples": report.samples,
                "p99_ms": round(results[contract.capability].p99_ms, 1),
                "contract_sha256": fingerprint(contract),
                "passed": True,
            }
            key = certification_key(contract).encode()
            await producer.send_and_wait(topic, json.dumps(record).encode(), key=key)
    finally:
        await producer.stop()
    return [certification_key(c) for c in contracts]


def render(report: Report) -> list[Table]:
    """A summary table per capability, plus the violations when there are any."""
    verdict = "[green]passed[/]" if report.passed else "[red]failed[/]"
    summary = Table(title=f"conformance of {report.unit}: {verdict}")
    for column in SUMMARY_COLUMNS:
        summary.add_column(column)
    for r in report.results:
        counts = (r.sent, r.passed, len(r.violations))
        timing = (f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}", str(r.sla_p99_ms))
        summary.add_row(r.capability, r.version, *map(str, counts), *timing)
    if report.passed:
        return [summary]
    broken = Table(title=f"{len(report.violations)} violations")
    for column in ("capability", "case", "expected", "got"):
        broken.add_column(column, overflow="fold")
    for v in report.violations:
        broken.add_row(v.capability, v.case, v.expected, v.got)
    return [summary, broken]
