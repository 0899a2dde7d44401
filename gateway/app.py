"""The gateway's HTTP API (FastAPI): start journeys, read their runs and bills."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

import contracts
from gateway.definitions import JOURNEYS_DIR, JourneyDefinition, load_all
from gateway.engine import JourneyEngine, JourneyInputError
from gateway.models import JourneyRun
from mbs.contract import Contract
from mbs.rpc import Requester
from mbs.settings import Settings, get_settings

MAX_KEPT_RUNS = 10_000
_HTTP_STATUS = {"completed": 200, "failed": 409, "timed_out": 504, "running": 202}


class Gateway:
    """Everything one gateway process holds: definitions, engine, recent runs."""

    def __init__(self, settings: Settings, catalog: dict[str, Contract]) -> None:
        self.settings = settings
        self.catalog = catalog
        self.definitions: dict[str, JourneyDefinition] = load_all(
            catalog, settings.journeys_dir or JOURNEYS_DIR
        )
        self.requester = Requester(settings.bootstrap, caller="gateway")
        self.engine = JourneyEngine(
            self.requester, catalog, default_timeout_s=settings.request_timeout
        )
        self.runs: OrderedDict[str, JourneyRun] = OrderedDict()
        self.ready = False
        self._background: set[asyncio.Task[JourneyRun]] = set()

    async def start(self) -> None:
        units = {
            self.catalog[s.capability].unit for d in self.definitions.values() for s in d.steps
        }
        await self.requester.start(f"mbs.replies.{unit}" for unit in units)
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.requester.stop()

    def keep(self, run: JourneyRun) -> None:
        self.runs[run.run_id] = run
        while len(self.runs) > MAX_KEPT_RUNS:
            self.runs.popitem(last=False)

    def start_in_background(self, definition: JourneyDefinition, run: JourneyRun) -> None:
        task = asyncio.create_task(self.engine.run(definition, run))
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def start_journey(
    name: str,
    request: Request,
    journey_input: Annotated[dict[str, Any], Body(description="The journey's input document.")],
    prefer: Annotated[str | None, Header(description="`respond-async` for a 202.")] = None,
) -> Response:
    """Run journey `name` with the JSON body as input; returns the run with its bill."""
    gateway = _gateway(request)
    definition = gateway.definitions.get(name)
    if definition is None:
        raise HTTPException(404, f"no journey {name!r}; known: {sorted(gateway.definitions)}")
    try:
        run = gateway.engine.new_run(definition, journey_input)
    except JourneyInputError as exc:
        raise HTTPException(422, str(exc)) from exc
    gateway.keep(run)
    location = f"/journeys/{name}/runs/{run.run_id}"
    if prefer and "respond-async" in prefer.lower():
        gateway.start_in_background(definition, run)
        return JSONResponse(
            run.model_dump(mode="json"), status_code=202, headers={"Location": location}
        )
    await gateway.engine.run(definition, run)
    status = _HTTP_STATUS[run.status]
    if run.status == "failed" and run.steps and any(s.status == "failed" for s in run.steps):
        status = 502  # a unit failed technically: not the caller's fault
    return JSONResponse(
        run.model_dump(mode="json"), status_code=status, headers={"Location": location}
    )


async def get_run(name: str, run_id: str, request: Request) -> JourneyRun:
    """One run of a journey: each step's status, unit, attempts, latency and cost."""
    run = _gateway(request).runs.get(run_id)
    if run is None or run.journey != name:
        raise HTTPException(404, f"no run {run_id!r} of journey {name!r} on this gateway")
    return run


async def list_journeys(request: Request) -> list[JourneyDefinition]:
    """Every journey definition that is live, with its version."""
    return list(_gateway(request).definitions.values())


async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


async def readyz(request: Request) -> JSONResponse:
    """Readiness: connected to Kafka and listening for replies."""
    ready = _gateway(request).ready
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


def create_app(
    settings: Settings | None = None, catalog: dict[str, Contract] | None = None
) -> FastAPI:
    """The gateway ASGI app; `settings` and `catalog` are injectable for tests."""
    gateway = Gateway(settings or get_settings(), catalog or dict(contracts.by_capability()))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gateway = gateway
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    routes: list[BaseRoute] = [
        APIRoute("/journeys/{name}", start_journey, methods=["POST"], tags=["journeys"]),
        APIRoute("/journeys/{name}/runs/{run_id}", get_run, methods=["GET"], tags=["journeys"]),
        APIRoute("/journeys", list_journeys, methods=["GET"], tags=["journeys"]),
        APIRoute("/healthz", healthz, methods=["GET"], tags=["ops"]),
        APIRoute("/readyz", readyz, methods=["GET"], tags=["ops"]),
    ]
    return FastAPI(
        title="Micro Business Services gateway",
        description="Composes customer journeys from unit capabilities over Kafka.",
        version="0.1.0",
        routes=routes,
        lifespan=lifespan,
    )
