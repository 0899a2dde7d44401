"""The gateway's HTTP handlers. Every route that takes a body reads it itself, after its key
was checked and only up to the body limit (see gateway.limits); who sees what is decided here:
a partner key reads only its own unit's scorecard and ledger lines."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from gateway import limits
from gateway.auth import AdminKey, AnyKey, CallerKey, PartnerKey
from gateway.bootstrap import Gateway
from gateway.definition import parse
from gateway.models import JourneyRun
from mbs.contract import load_contract_file
from mbs.errors import (
    ContractRefused,
    JourneyDefinitionError,
    JourneyInputError,
    MalformedDefinition,
    MbsError,
    VersionConflict,
)
from mbs.settings import ApiKey

_HTTP_STATUS = {
    "completed": 200,
    "failed": 409,
    "timed_out": 504,
    "running": 202,
    "compensating": 202,
    "compensation_failed": 502,
}
WAIT_MARGIN_S = 15.0
SAVE_TIMEOUT_S = 5.0
RETRY_AFTER = {"Retry-After": "2"}


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def _location(run: JourneyRun) -> str:
    return f"/journeys/{run.journey}/runs/{run.run_id}"


def _respond(run: JourneyRun, status: int | None = None) -> Response:
    code = status or _HTTP_STATUS[run.status]
    if run.status == "failed" and any(s.status == "failed" for s in run.steps):
        code = 502  # a unit failed technically: not the caller's fault
    return Response(  # pydantic writes the JSON itself (the stdlib encoder cost 3% of a run)
        run.public().model_dump_json(),
        status_code=code,
        headers={"Location": _location(run)},
        media_type="application/json",
    )


def _own(who: ApiKey, unit: str) -> bool:
    """May this key holder read the numbers of `unit`?"""
    return who.role != "partner" or who.caller == unit


async def start_journey(
    name: str,
    request: Request,
    caller: CallerKey,
    prefer: Annotated[str | None, Header(description="`respond-async` for a 202.")] = None,
) -> Response:
    """Run the live version of journey `name` with the JSON body (an object) as input.

    200 completed, 409 a business error, 502 a unit failed, 504 a step timed out; every
    response carries the run with its bill. `Prefer: respond-async` returns 202 at once.
    503 (with `Retry-After`) while Kafka is unreachable: nothing was started."""
    gateway = _gateway(request)
    definition = gateway.definition_store.latest(name)
    if definition is None:
        raise HTTPException(404, f"no journey {name!r}; known: {gateway.definition_store.names()}")
    limit = gateway.settings.max_body_bytes
    journey_input = limits.json_object(await limits.read_body(request, limit))
    limits.check_input_size(journey_input, gateway.settings.max_record_bytes)
    try:
        run = gateway.engine.new_run(definition, journey_input)
    except JourneyInputError as exc:
        raise HTTPException(422, str(exc)) from exc
    if not gateway.broker.reachable:
        raise HTTPException(503, "Kafka is unreachable; no run was started", RETRY_AFTER)
    try:  # durable before anything runs
        partition = await asyncio.wait_for(gateway.runlog.submit(run), SAVE_TIMEOUT_S)
    except TimeoutError:
        raise HTTPException(
            503,
            f"Kafka did not confirm run {run.run_id} within {SAVE_TIMEOUT_S:g}s; if it was "
            f"written it starts late and times out without side effects: GET {_location(run)}",
            {**RETRY_AFTER, "Location": _location(run)},
        ) from None
    gateway.executor.take(run, partition)
    if prefer and "respond-async" in prefer.lower():
        return _respond(run, 202)
    finished = await gateway.runlog.wait_finished(run.run_id, definition.timeout + WAIT_MARGIN_S)
    return _respond(finished or run, None if finished else 202)


async def get_run(name: str, run_id: str, request: Request, caller: CallerKey) -> JourneyRun:
    """One run: each step's status, provider, attempts, latency, cost, and the bill."""
    run = _gateway(request).runlog.get(run_id)
    if run is None or run.journey != name:
        raise HTTPException(404, f"no run {run_id!r} of journey {name!r}")
    return run.public()  # secrets masked


async def parked_runs(request: Request, admin: AdminKey) -> list[JourneyRun]:
    """Runs parked with status `compensation_failed`: side effects that could not be settled
    or undone after retries (their message ids in `parked`). Resolve the cause (a unit down,
    a refused undo), then reopen each with `POST /journeys/{name}/runs/{id}/compensate`."""
    return [run.public() for run in _gateway(request).runlog.parked()]


async def reopen_run(name: str, run_id: str, request: Request, admin: AdminKey) -> Response:
    """Pursue a parked run's side effects again (settle, undo); 202, poll the run."""
    gateway = _gateway(request)
    run = gateway.runlog.get(run_id)
    if run is None or run.journey != name:
        raise HTTPException(404, f"no run {run_id!r} of journey {name!r}")
    if run.status != "compensation_failed":
        raise HTTPException(409, f"run {run_id} is {run.status}, not compensation_failed")
    reopened = run.model_copy(deep=True)
    gateway.engine.reopen(reopened)
    await gateway.runlog.submit(reopened)
    return _respond(reopened, 202)


async def list_journeys(request: Request, who: AnyKey) -> list[dict[str, Any]]:
    """Every journey with its live version and all versions known."""
    store = _gateway(request).definition_store
    out = []
    for name in store.names():
        live = store.latest(name)
        assert live is not None
        versions = sorted(v for (n, v) in store.versions if n == name)
        out.append(
            {
                "name": name,
                "live_version": live.version,
                "versions": versions,
                "definition": live.model_dump(mode="json"),
            }
        )
    return out


async def put_journey(name: str, request: Request, admin: AdminKey) -> JSONResponse:
    """Put a new version live (YAML or JSON body); running journeys keep their version.
    400 when the body is not YAML/JSON (or uses YAML anchors/aliases), 422 when it is not a
    valid journey for the catalog, 409 when its version is not above the live one."""
    gateway = _gateway(request)
    body = await limits.read_body(request, gateway.settings.max_body_bytes)
    try:
        definition = parse(limits.text_of(body), f"PUT /journeys/{name}", gateway.catalog)
    except MalformedDefinition as exc:
        raise HTTPException(400, str(exc)) from exc
    except JourneyDefinitionError as exc:
        raise HTTPException(422, str(exc)) from exc
    if definition.name != name:
        raise HTTPException(422, f"the body defines {definition.name!r}, not {name!r}")
    try:
        await gateway.definition_store.put(definition)
    except VersionConflict as exc:
        raise HTTPException(409, str(exc)) from exc
    return JSONResponse({"name": name, "live_version": definition.version}, status_code=201)


async def list_units(request: Request, who: AnyKey) -> list[dict[str, Any]]:
    """Every unit with its owner, kind and the capabilities it offers (the public catalog)."""
    units: dict[str, dict[str, Any]] = {}
    for c in _gateway(request).catalog.contracts():
        entry = units.setdefault(
            c.unit, {"unit": c.unit, "owner": c.owner, "kind": c.kind, "capabilities": []}
        )
        entry["capabilities"].append(
            {
                "capability": c.capability,
                "version": c.version,
                "topic": c.request_topic,
                "price_per_call": str(c.pricing.price_per_call),
                "currency": c.pricing.currency,
                "p99_ms": c.sla.p99_ms,
            }
        )
    return sorted(units.values(), key=lambda u: str(u["unit"]))


async def register_contract(request: Request, partner: PartnerKey) -> JSONResponse:
    """A partner registers (a new version of) its own contract; checked for compatibility.
    422 when it is not a valid contract: the request schema documents every field's format,
    but that `request` and `reply` are valid JSON Schemas is checked here; 409 when it breaks
    compatibility with the version before."""
    gateway = _gateway(request)
    body = await limits.read_body(request, gateway.settings.max_body_bytes)
    try:
        found = load_contract_file(limits.text_of(body), "body")
    except MbsError as exc:
        raise HTTPException(422, str(exc)) from exc
    for contract in found:
        if partner.role == "partner" and (
            contract.unit != partner.caller or contract.kind != "partner"
        ):
            raise HTTPException(
                403,
                f"partner {partner.caller!r} may only register its own "
                f"partner contracts (got unit {contract.unit!r})",
            )
    try:
        written = await gateway.registry.register(found)
    except ContractRefused as refused:
        raise HTTPException(
            409,
            {
                "refused": refused.contract.key,
                "reasons": [{"path": r.path, "reason": r.reason} for r in refused.reasons],
            },
        ) from refused
    gateway.catalog.update(found)
    return JSONResponse(
        {
            "registered": [c.key for c in written],
            "unchanged": [c.key for c in found if c not in written],
        },
        status_code=201,
    )


async def scorecard(request: Request, who: AnyKey) -> dict[str, Any]:
    """Every unit's P&L, errors and latency against its SLA; every capability's providers side
    by side (as this gateway instance saw their calls since it started). A partner key sees
    only its own unit."""
    card = _gateway(request).engine.scorecard
    units = [u for u in card.units() if _own(who, u["unit"])]
    capabilities = []
    for entry in card.capabilities():
        providers = [p for p in entry["providers"] if _own(who, p["unit"])]
        if providers:
            capabilities.append({**entry, "providers": providers})
    return {"units": units, "capabilities": capabilities}


async def ledger(request: Request, who: AnyKey) -> list[dict[str, Any]]:
    """Settlement: per hour, what each partner earned and each internal unit charged. A
    partner key sees only its own lines."""
    return [line for line in _gateway(request).engine.scorecard.ledger() if _own(who, line["unit"])]


async def unit_scorecard(unit: str, request: Request, who: AnyKey) -> dict[str, Any]:
    """One unit's scorecard (a partner key: its own unit only, 403 for another)."""
    gateway = _gateway(request)
    if unit not in {c.unit for c in gateway.catalog.contracts()}:
        raise HTTPException(404, f"no unit {unit!r}")
    if not _own(who, unit):
        raise HTTPException(403, f"partner {who.caller!r} may read only its own scorecard")
    return gateway.engine.scorecard.unit(unit)


async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


async def readyz(request: Request) -> JSONResponse:
    """Readiness: started, Kafka reachable now, and the journey log replayed (unfinished runs
    resumed). 503 otherwise, with what is missing."""
    checks = _gateway(request).readiness()
    ready = all(checks.values())
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)
