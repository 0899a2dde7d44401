"""API keys with roles: `caller` runs journeys, `admin` also changes them, `partner` registers
its own contracts. Keys come from MBS_API_KEYS (the dev keys of the README by default)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request

from mbs.settings import ApiKey

ROLES_ALLOWED = {
    "caller": {"caller", "admin"},
    "admin": {"admin"},
    "partner": {"partner", "admin"},
    "any": {"caller", "admin", "partner"},
}


def require(need: str) -> Callable[..., Coroutine[Any, Any, ApiKey]]:
    """A FastAPI dependency: the key's holder, if its role may do `need`; else 401/403."""

    async def check(
        request: Request,
        x_api_key: Annotated[str | None, Header(description="Your API key.")] = None,
    ) -> ApiKey:
        if not x_api_key:
            raise HTTPException(
                401,
                "missing X-API-Key header; ask ops for a key",
                headers={"WWW-Authenticate": "ApiKey"},
            )
        keys: dict[str, ApiKey] = request.app.state.gateway.settings.api_keys
        holder = keys.get(x_api_key)
        if holder is None:
            raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "ApiKey"})
        if holder.role not in ROLES_ALLOWED[need]:
            raise HTTPException(403, f"role {holder.role!r} may not do this (needs {need})")
        return holder

    return check


# What each route needs from the X-API-Key holder (the key, not the journey `Caller`).
CallerKey = Annotated[ApiKey, Depends(require("caller"))]
AdminKey = Annotated[ApiKey, Depends(require("admin"))]
PartnerKey = Annotated[ApiKey, Depends(require("partner"))]
AnyKey = Annotated[ApiKey, Depends(require("any"))]
