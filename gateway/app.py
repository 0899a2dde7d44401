"""The gateway's HTTP API (FastAPI): run journeys, read runs and bills, change journeys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import make_asgi_app
from pydantic import BaseModel
from starlette.routing import BaseRoute, Mount

from gateway.auth import AdminKey, AnyKey, CallerKey, PartnerKey
from gateway.bootstrap import Gateway
from gateway.catalog import Catalog
from gateway.definition import JourneyDefinition, parse
from gateway.models import JourneyRun
from mbs.contract import Contract, load_contract_file
from mbs.errors import (
    ContractRefused,
    JourneyDefinitionError,
    JourneyInputError,
    MbsError,
    VersionConflict,
)
from mbs.settings import Settings, get_settings
from mbs.telemetry import tracing

_HTTP_STATUS = {
    "completed": 200,
    "failed": 409,
    "timed_out": 504,
    "running": 202,
    "compensating": 202,
    "compensation_failed": 502,
}
WAIT_MARGIN_S = 15.0


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def _respond(run: JourneyRun, status: int | None = None) -> JSONResponse:
    code = status or _HTTP_STATUS[run.status]
    if run.status == "failed" and any(s.status == "failed" for s in run.steps):
        code = 502  # a unit failed technically: not the caller's fault
    location = f"/journeys/{run.journey}/runs/{run.run_id}"
    return JSONResponse(
        run.model_dump(mode="json"), status_code=code, headers={"Location": location}
    )


async def start_journey(
    name: str,
    request: Request,
    caller: CallerKey,
    journey_input: Annotated[dict[str, Any], Body(description="The journey's input document.")],
    prefer: Annotated[str | None, Header(description="`respond-async` for a 202.")] = None,
) -> Response:
    """Run the live version of journey `name` with the JSON body as input.

    200 completed, 409 a business error, 502 a unit failed, 504 a step timed out; every
    response carries the run with its bill. `Prefer: respond-async` returns 202 at once."""
    gateway = _gateway(request)
    definition = gateway.definition_store.latest(name)
    if definition is None:
        raise HTTPException(404, f"no journey {name!r}; known: {gateway.definition_store.names()}")
    try:
        run = gateway.engine.new_run(definition, journey_input)
    except JourneyInputError as exc:
        raise HTTPException(422, str(exc)) from exc
    partition = await gateway.runlog.save(run)  # durable before anything runs
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
    return run


async def parked_runs(request: Request, admin: AdminKey) -> list[JourneyRun]:
    """Runs parked with status `compensation_failed`: side effects that could not be settled
    or undone after retries (their message ids in `parked`). Resolve the cause (a unit down,
    a refused undo), then reopen each with `POST /journeys/{name}/runs/{id}/compensate`."""
    return _gateway(request).runlog.parked()


async def reopen_run(name: str, run_id: str, request: Request, admin: AdminKey) -> JSONResponse:
    """Pursue a parked run's side effects again (settle, undo); 202, poll the run."""
    gateway = _gateway(request)
    run = gateway.runlog.get(run_id)
    if run is None or run.journey != name:
        raise HTTPException(404, f"no run {run_id!r} of journey {name!r}")
    if run.status != "compensation_failed":
        raise HTTPException(409, f"run {run_id} is {run.status}, not compensation_failed")
    reopened = run.model_copy(deep=True)
    gateway.engine.reopen(reopened)
    await gateway.runlog.save(reopened)
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
    """Put a new version live (YAML or JSON body); running journeys keep their version."""
    gateway = _gateway(request)
    text = (await request.body()).decode("utf-8", "replace")
    try:
        definition = parse(text, f"PUT /journeys/{name}", gateway.catalog)
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
    """Every unit with its owner, kind and the capabilities it offers."""
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
    """A partner registers (a new version of) its own contract; checked for compatibility."""
    gateway = _gateway(request)
    try:
        found = load_contract_file((await request.body()).decode("utf-8", "replace"), "body")
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
    by side (as this gateway instance saw their calls since it started)."""
    card = _gateway(request).engine.scorecard
    return {"units": card.units(), "capabilities": card.capabilities()}


async def ledger(request: Request, who: AnyKey) -> list[dict[str, Any]]:
    """Settlement: per hour, what each partner earned and each internal unit charged."""
    return _gateway(request).engine.scorecard.ledger()


async def unit_scorecard(unit: str, request: Request, who: AnyKey) -> dict[str, Any]:
    """One unit's scorecard."""
    gateway = _gateway(request)
    if unit not in {c.unit for c in gateway.catalog.contracts()}:
        raise HTTPException(404, f"no unit {unit!r}")
    return gateway.engine.scorecard.unit(unit)


async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


async def readyz(request: Request) -> JSONResponse:
    """Readiness: connected to Kafka, journeys loaded, listening for replies."""
    ready = _gateway(request).ready
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


def create_app(settings: Settings | None = None, catalog: Catalog | None = None) -> FastAPI:
    """The gateway ASGI app; `settings` and `catalog` are injectable for tests."""
    gateway = Gateway(settings or get_settings(), catalog)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gateway = gateway
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()
            tracing.shutdown_tracing()

    routes: list[BaseRoute] = [
        APIRoute("/journeys/{name}", start_journey, methods=["POST"], tags=["journeys"]),
        APIRoute(
            "/journeys/{name}", put_journey, methods=["PUT"], tags=["journeys"], status_code=201
        ),
        APIRoute("/journeys/{name}/runs/{run_id}", get_run, methods=["GET"], tags=["journeys"]),
        APIRoute(
            "/journeys/{name}/runs/{run_id}/compensate",
            reopen_run,
            methods=["POST"],
            tags=["journeys"],
        ),
        APIRoute("/runs/parked", parked_runs, methods=["GET"], tags=["journeys"]),
        APIRoute("/journeys", list_journeys, methods=["GET"], tags=["journeys"]),
        APIRoute("/units", list_units, methods=["GET"], tags=["units"]),
        APIRoute("/units/{unit}/scorecard", unit_scorecard, methods=["GET"], tags=["units"]),
        APIRoute("/scorecard", scorecard, methods=["GET"], tags=["units"]),
        APIRoute("/ledger", ledger, methods=["GET"], tags=["partners"]),
        APIRoute(
            "/contracts", register_contract, methods=["POST"], tags=["partners"], status_code=201
        ),
        APIRoute("/healthz", healthz, methods=["GET"], tags=["ops"]),
        APIRoute("/readyz", readyz, methods=["GET"], tags=["ops"]),
        Mount("/metrics", app=make_asgi_app()),
    ]
    app = FastAPI(
        title="Micro Business Services gateway",
        description="Composes customer journeys from unit capabilities over Kafka. "
        "Send your key in `X-API-Key`.",
        version="0.2.0",
        routes=routes,
        lifespan=lifespan,
    )
    _document_raw_bodies(app)
    return app


def _document_raw_bodies(app: FastAPI) -> None:
    """The two routes that read their body themselves (YAML or JSON) still get a documented
    request schema: a journey definition, and a contract (or a list of them)."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = plain()
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        bodies: dict[tuple[str, str], type[BaseModel]] = {
            ("/journeys/{name}", "put"): JourneyDefinition,
            ("/contracts", "post"): Contract,
        }
        for (path, method), model in bodies.items():
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            components[model.__name__] = schema
            ref = {"$ref": f"#/components/schemas/{model.__name__}"}
            content: dict[str, Any] = {"application/json": {"schema": ref}}
            if model is JourneyDefinition:
                content["application/yaml"] = {"schema": ref}
            doc["paths"][path][method]["requestBody"] = {"required": True, "content": content}
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["JourneyDefinition", "create_app"]
