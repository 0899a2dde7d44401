"""The gateway's ASGI app (FastAPI): its routes, what each may answer, and the OpenAPI
document that says so. The handlers are in gateway.routes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import Response
from fastapi.routing import APIRoute
from prometheus_client import make_asgi_app
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Mount

from gateway import routes as r
from gateway.auth import Guarded
from gateway.bootstrap import Gateway
from gateway.catalog import Catalog
from gateway.definition import JourneyDefinition
from gateway.models import ContractOffer, JourneyRun
from mbs.settings import Settings, get_settings
from mbs.telemetry import tracing


class Problem(BaseModel):
    """Why a request was refused: `detail` says what was wrong and what to do."""

    detail: Any


_WHY = {
    400: "The body is not what the route reads (not UTF-8, not JSON or YAML, bad length).",
    401: "No key, or an unknown key, in `X-API-Key` (or `Authorization: Bearer`).",
    403: "The key's role may not do this (or, for a partner, not on another unit).",
    404: "No such journey, run or unit.",
    409: "Conflicts with what is there (see the route).",
    413: "The body, or the journey input, is over its limit.",
    422: "Well-formed, but not valid (the detail names the field).",
    503: "Kafka is unreachable or the gateway is not ready; retry after `Retry-After`.",
}
_RUN = {"model": JourneyRun}
_RUN_STATUSES = {
    200: {"description": "Completed: the run with its bill.", **_RUN},
    202: {"description": "Still running (or `Prefer: respond-async`): poll `Location`.", **_RUN},
    409: {"description": "A step answered a business error; compensated.", **_RUN},
    502: {"description": "A unit failed technically, or compensation failed.", **_RUN},
    504: {"description": "A step or the journey timed out; compensated.", **_RUN},
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"description": _WHY[code], "model": Problem} for code in codes}


_KEYED = (401, 403)


def _route(
    path: str,
    endpoint: Callable[..., Any],
    method: str,
    tag: str,
    codes: tuple[int, ...],
    *,
    status_code: int | None = None,
    extra: dict[int | str, dict[str, Any]] | None = None,
) -> APIRoute:
    responses = {**_errors(*codes), **(extra or {})}
    return APIRoute(
        path,
        endpoint,
        methods=[method],
        tags=[tag],
        responses=responses,
        status_code=status_code,
    )


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

    journeys = "/journeys/{name}"
    run = "/journeys/{name}/runs/{run_id}"
    table: list[BaseRoute] = [
        _route(
            journeys,
            r.start_journey,
            "POST",
            "journeys",
            (*_KEYED, 400, 404, 413, 422, 503),
            extra={code: dict(spec) for code, spec in _RUN_STATUSES.items()},
        ),
        _route(
            journeys,
            r.put_journey,
            "PUT",
            "journeys",
            (*_KEYED, 400, 409, 413, 422),
            status_code=201,
        ),
        _route(run, r.get_run, "GET", "journeys", (*_KEYED, 404)),
        _route(
            f"{run}/compensate",
            r.reopen_run,
            "POST",
            "journeys",
            (*_KEYED, 404, 409),
            status_code=202,
            extra={202: {"description": "Reopened: poll the run.", **_RUN}},
        ),
        _route("/runs/parked", r.parked_runs, "GET", "journeys", _KEYED),
        _route("/journeys", r.list_journeys, "GET", "journeys", _KEYED),
        _route("/units", r.list_units, "GET", "units", _KEYED),
        _route("/units/{unit}/scorecard", r.unit_scorecard, "GET", "units", (*_KEYED, 404)),
        _route("/scorecard", r.scorecard, "GET", "units", _KEYED),
        _route("/ledger", r.ledger, "GET", "partners", _KEYED),
        _route(
            "/contracts",
            r.register_contract,
            "POST",
            "partners",
            (*_KEYED, 400, 409, 413, 422),
            status_code=201,
        ),
        _route("/healthz", r.healthz, "GET", "ops", ()),
        _route(
            "/readyz",
            r.readyz,
            "GET",
            "ops",
            (),
            extra={503: {"description": "Not ready: the body says which check fails."}},
        ),
        Mount(
            "/metrics", app=Guarded(make_asgi_app(), "metrics", lambda: gateway.settings.api_keys)
        ),
    ]
    app = FastAPI(
        title="Micro Business Services gateway",
        description="Composes customer journeys from unit capabilities over Kafka. "
        "Send your key in `X-API-Key`. `/metrics` (Prometheus) needs a key of role "
        "`metrics` or `admin`, as `Authorization: Bearer <key>`.",
        version=_version(),
        routes=table,
        lifespan=lifespan,
    )
    app.add_exception_handler(HTTPException, _allow_every_method)
    _document_raw_bodies(app)
    return app


def _version() -> str:
    """The installed package's version (the OpenAPI document's `info.version`)."""
    try:
        return metadata.version("micro-business-services")
    except metadata.PackageNotFoundError:
        return "0+unknown"


async def _allow_every_method(request: Request, exc: Exception) -> Response:
    """A 405 names every method of the path in `Allow`, not only those of the first route
    that matched it (`POST` and `PUT /journeys/{name}` are two routes)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        path = request.url.path
        methods = {
            method
            for route in request.app.routes
            if isinstance(route, APIRoute) and route.path_regex.match(path)
            for method in route.methods or ()
        }
        exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(methods))}
    return await http_exception_handler(request, exc)


def _document_raw_bodies(app: FastAPI) -> None:
    """The routes that read their body themselves still get a documented request schema:
    a journey input, a journey definition, and a contract (or a list of them)."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = plain()
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        bodies: dict[tuple[str, str], type[BaseModel] | None] = {
            ("/journeys/{name}", "post"): None,
            ("/journeys/{name}", "put"): JourneyDefinition,
            ("/contracts", "post"): ContractOffer,
        }
        for (path, method), model in bodies.items():
            if model is None:
                schema: dict[str, Any] = {
                    "type": "object",
                    "description": "The journey's input document (see `GET /journeys`).",
                }
                content: dict[str, Any] = {"application/json": {"schema": schema}}
            else:
                found = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(found.pop("$defs", {}))
                components[model.__name__] = found
                ref = {"$ref": f"#/components/schemas/{model.__name__}"}
                content = {"application/json": {"schema": ref}}
                if model is ContractOffer:  # one contract, or a partner's file of them
                    many = {"type": "array", "items": ref, "minItems": 1}
                    content = {"application/json": {"schema": {"anyOf": [ref, many]}}}
                if model is JourneyDefinition:
                    content["application/yaml"] = {"schema": ref}
            doc["paths"][path][method]["requestBody"] = {"required": True, "content": content}
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["JourneyDefinition", "create_app"]
