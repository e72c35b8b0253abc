"""Roles, bearer tokens and signed media links.

Two roles: ``admin`` (``ApiConfig.admin_token``, or the older ``token``) may change anything; ``viewer``
(``ApiConfig.viewer_token``) reads, watches media and acknowledges incidents (an operator's duty, and
acknowledging changes nothing else of an incident). Tokens travel only in ``Authorization: Bearer``,
are compared in constant time (both roles are always checked) and never logged.

Media the browser loads by itself (``<img>``, ``<video>``: live views, HLS, key frames, clips) cannot
send a header, so it uses short-lived signed links instead: ``?exp=<epoch s>&sig=<HMAC-SHA256 of the
path and exp>``, issued by ``POST /auth/links`` to a caller with a token and accepted for GET/HEAD
on those media routes only. The key is ``ApiConfig.link_secret``, else derived from the admin token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field
from trtseg.config import ApiConfig

Role = Literal["admin", "viewer"]
EXP_PARAM, SIG_PARAM = "exp", "sig"
_SEGMENT = r"[^/]{1,140}"
MEDIA_ROUTES = tuple(
    re.compile(pattern)
    for pattern in (
        rf"^/cameras/{_SEGMENT}/(frame\.jpg|live\.mjpg)$",
        rf"^/hls/{_SEGMENT}/{_SEGMENT}$",
        rf"^/events/{_SEGMENT}/keyframe$",
        rf"^/incidents/{_SEGMENT}/keyframe/(open|alert|close)/(raw|annotated)$",
        rf"^/incidents/{_SEGMENT}/clip$",
    )
)
_CHALLENGE = 'Bearer realm="trtseg"'


def app_path(request: Request) -> str:
    """The request's path as the app routes it (without Serve's route prefix)."""
    path = request.scope.get("path", "") or "/"
    root = (request.scope.get("root_path") or "").rstrip("/")
    if root and path.startswith(root + "/"):
        path = path[len(root) :]
    return path


def is_media_path(path: str) -> bool:
    return any(pattern.match(path) for pattern in MEDIA_ROUTES)


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = _CHALLENGE + (f', error="{error}"' if error else "")
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": challenge})


def _presented(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    if header:
        raise _unauthorized("invalid authorization header (send 'Authorization: Bearer <token>')", "invalid_request")
    return None


def _matches(presented: bytes, secret: str | None) -> bool:
    # Compare against a value of the secret's own length class even when absent, in constant time.
    expected = secret.encode("utf-8") if secret else b"\0" * 32
    return hmac.compare_digest(presented, expected) and secret is not None


def role_of(config: ApiConfig, request: Request) -> Role | None:
    """The role the request's bearer token grants; None without a token; 401 for a wrong one."""
    if not config.auth_enabled:
        return "admin"
    presented = _presented(request)
    if presented is None:
        return None
    given = presented.encode("utf-8")
    is_admin = _matches(given, config.admin_secret())
    is_viewer = _matches(given, config.viewer_secret())
    if is_admin:
        return "admin"
    if is_viewer:
        return "viewer"
    raise _unauthorized("invalid bearer token", "invalid_token")


# -- signed links ---------------------------------------------------------------------------------


def _signature(key: bytes, path: str, exp: int) -> str:
    digest = hmac.new(key, f"{path}\n{exp}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign_path(config: ApiConfig, path: str, now: float | None = None, ttl_s: int | None = None) -> str:
    """``path?exp=..&sig=..`` (path as the app routes it, with a leading '/'); the path alone when auth is off."""
    key = config.link_key()
    if key is None:
        return path
    exp = int((time.time() if now is None else now) + (ttl_s or config.link_ttl_s))
    return f"{path}?{EXP_PARAM}={exp}&{SIG_PARAM}={_signature(key, path, exp)}"


def link_valid(config: ApiConfig, request: Request, now: float | None = None) -> bool | None:
    """None: the request carries no link signature; else whether it is a valid, unexpired one for this path."""
    exp_text, sig = request.query_params.get(EXP_PARAM), request.query_params.get(SIG_PARAM)
    if exp_text is None and sig is None:
        return None
    key = config.link_key()
    path = app_path(request)
    if key is None or not exp_text or not sig or not exp_text.isdigit() or len(exp_text) > 12:
        return False
    if request.method not in ("GET", "HEAD") or not is_media_path(path):
        return False
    exp = int(exp_text)
    if exp < (time.time() if now is None else now) or exp > time.time() + 86400 + 60:
        return False
    return hmac.compare_digest(sig.encode("ascii", "replace"), _signature(key, path, exp).encode("ascii"))


# -- dependencies ---------------------------------------------------------------------------------


def require_read(config: ApiConfig) -> Callable[[Request], None]:
    """Reads: open unless ``token_for_reads`` or a viewer token is set; then a token of either role, or a
    valid signed link on a media route."""

    def dependency(request: Request) -> None:
        if not config.reads_need_token:
            return
        if request.headers.get("authorization") and role_of(config, request) is not None:
            return
        signed = link_valid(config, request)
        if signed:
            return
        if signed is False:
            raise _unauthorized("invalid or expired signed link (ask POST /auth/links for a new one)", "invalid_token")
        raise _unauthorized("missing bearer token (send 'Authorization: Bearer <token>')")

    return dependency


def require_role(config: ApiConfig, allowed: tuple[Role, ...], action: str) -> Callable[[Request], None]:
    def dependency(request: Request) -> None:
        role = role_of(config, request)
        if role is None:
            raise _unauthorized("missing bearer token (send 'Authorization: Bearer <token>')")
        if role not in allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"{action} needs the admin role")

    return dependency


def require_write(config: ApiConfig) -> Callable[[Request], None]:
    """Changes (cameras, zones, rules, outbound URLs, on-demand inference): the admin role."""
    return require_role(config, ("admin",), "this change")


def require_ack(config: ApiConfig) -> Callable[[Request], None]:
    """Acknowledging incidents: either role (viewers are the operators who acknowledge)."""
    return require_role(config, ("admin", "viewer"), "acknowledging")


# -- routes ---------------------------------------------------------------------------------------


class WhoAmI(BaseModel):
    role: Literal["admin", "viewer", "anonymous"] = Field(description="What the presented token grants.")
    auth: bool = Field(description="Whether the API checks tokens at all.")
    reads_need_token: bool
    can_change: bool = Field(description="Cameras, zones, rules and outbound URLs.")
    can_acknowledge: bool
    link_ttl_s: int


class LinkRequest(BaseModel):
    paths: list[str] = Field(min_length=1, max_length=200, description="Media paths, e.g. cameras/cam1/live.mjpg.")


class LinkAnswer(BaseModel):
    links: dict[str, str] = Field(description="Each asked path -> its signed URL, relative to the API's root.")
    expires_at: int


def build_router(config: ApiConfig, read: Any) -> APIRouter:
    router = APIRouter(tags=["system"])

    @router.get("/auth/whoami", response_model=WhoAmI, summary="The caller's role")
    async def whoami(request: Request) -> WhoAmI:
        role = role_of(config, request)
        return WhoAmI(
            role=role or "anonymous",
            auth=config.auth_enabled,
            reads_need_token=config.reads_need_token,
            can_change=role == "admin",
            can_acknowledge=role in ("admin", "viewer"),
            link_ttl_s=config.link_ttl_s,
        )

    @router.post(
        "/auth/links",
        response_model=LinkAnswer,
        summary="Signed media links",
        description="Short-lived links (`?exp=&sig=`) for media the browser loads itself: live views, HLS, key "
        "frames, clips. Needs read access; a link is valid for GET/HEAD of its own path until `expires_at`.",
        dependencies=[Depends(read)],
    )
    async def links(body: LinkRequest) -> LinkAnswer:
        now = time.time()
        answer: dict[str, str] = {}
        for index, raw in enumerate(body.paths):
            path = "/" + raw.split("?", 1)[0].lstrip("/")
            if not is_media_path(path) or "/../" in path or path.endswith("/.."):
                raise HTTPException(422, detail=[{"loc": ["body", "paths", index], "msg": "not a media path"}])
            answer[raw] = sign_path(config, path, now=now).lstrip("/")
        return LinkAnswer(links=answer, expires_at=int(now + config.link_ttl_s))

    return router
