"""API keys with roles: `caller` runs journeys, `admin` also changes them and reads everything,
`partner` registers its own contracts and reads only its own numbers, `metrics` only scrapes
`/metrics`. Keys come from MBS_API_KEYS (the dev keys of the README by default), sent as
`X-API-Key` or as `Authorization: Bearer <key>` (what Prometheus sends).

The key is checked before the request body is read, so an unauthenticated upload costs the
gateway nothing."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from mbs.settings import ApiKey

ROLES_ALLOWED = {
    "caller": {"caller", "admin"},
    "admin": {"admin"},
    "partner": {"partner", "admin"},
    "any": {"caller", "admin", "partner"},
    "metrics": {"metrics", "admin"},
}
CHALLENGE = {"WWW-Authenticate": "ApiKey"}


def holder(keys: Mapping[str, ApiKey], api_key: str | None, authorization: str | None) -> ApiKey:
    """Who holds the key sent (401 when none or unknown)."""
    key = api_key
    if not key and authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    if not key:
        raise HTTPException(401, "missing X-API-Key header; ask ops for a key", CHALLENGE)
    found = keys.get(key)
    if found is None:
        raise HTTPException(401, "unknown API key", CHALLENGE)
    return found


def allowed(found: ApiKey, need: str) -> ApiKey:
    """The holder, if its role may do `need` (403 otherwise)."""
    if found.role not in ROLES_ALLOWED[need]:
        roles = " or ".join(sorted(ROLES_ALLOWED[need]))
        raise HTTPException(403, f"role {found.role!r} may not do this (needs {roles})")
    return found


# Declared as OpenAPI security schemes, so `/docs` has an Authorize button; checked here.
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="Your API key.")
_BEARER = HTTPBearer(auto_error=False, description="The same key as a Bearer token.")


def require(need: str) -> Callable[..., Coroutine[Any, Any, ApiKey]]:
    """A FastAPI dependency: the key's holder, if its role may do `need`; else 401/403."""

    async def check(
        request: Request,
        x_api_key: Annotated[str | None, Security(_API_KEY)] = None,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)] = None,
    ) -> ApiKey:
        keys = request.app.state.gateway.settings.api_keys
        token = f"Bearer {bearer.credentials}" if bearer else None
        return allowed(holder(keys, x_api_key, token), need)

    return check


class Guarded:
    """An ASGI app behind a key check (for mounted apps such as `/metrics`)."""

    def __init__(self, app: ASGIApp, need: str, keys: Callable[[], Mapping[str, ApiKey]]):
        self.app, self.need, self.keys = app, need, keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            try:
                allowed(
                    holder(self.keys(), headers.get("x-api-key"), headers.get("authorization")),
                    self.need,
                )
            except HTTPException as refused:
                response = JSONResponse(
                    {"detail": refused.detail}, refused.status_code, headers=refused.headers
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# What each route needs from the X-API-Key holder (the key, not the journey `Caller`).
CallerKey = Annotated[ApiKey, Depends(require("caller"))]
AdminKey = Annotated[ApiKey, Depends(require("admin"))]
PartnerKey = Annotated[ApiKey, Depends(require("partner"))]
AnyKey = Annotated[ApiKey, Depends(require("any"))]
