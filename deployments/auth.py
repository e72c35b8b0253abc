"""Bearer-token checks: mutating endpoints always, reads too when ApiConfig.token_for_reads is set."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import HTTPException, Request, status
from trtseg.config import ApiConfig

TOKEN_QUERY = "access_token"


def _presented(request: Request, allow_query: bool) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    if allow_query:
        # <img>/<video> tags cannot send headers: reads may carry the token as a query parameter.
        return request.query_params.get(TOKEN_QUERY) or None
    return None


def _check(config: ApiConfig, request: Request, allow_query: bool) -> None:
    if config.token is None or not config.token.get_secret_value():
        return
    presented = _presented(request, allow_query)
    if presented is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing bearer token (send 'Authorization: Bearer <token>')",
            headers={"WWW-Authenticate": 'Bearer realm="trtseg"'},
        )
    expected = config.token.get_secret_value().encode("utf-8")
    if not hmac.compare_digest(presented.encode("utf-8"), expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="invalid bearer token",
            headers={"WWW-Authenticate": 'Bearer realm="trtseg", error="invalid_token"'},
        )


def require_write(config: ApiConfig) -> Callable[[Request], None]:
    """Dependency for endpoints that change state."""

    def dependency(request: Request) -> None:
        _check(config, request, allow_query=False)

    return dependency


def require_read(config: ApiConfig) -> Callable[[Request], None]:
    """Dependency for reads: a no-op unless token_for_reads."""

    def dependency(request: Request) -> None:
        if config.token_for_reads:
            _check(config, request, allow_query=True)

    return dependency
