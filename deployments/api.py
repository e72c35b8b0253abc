"""The FastAPI app: routes, auth, CORS, request ids, error handling and the dashboard's static files.

`create_app` takes its collaborators as arguments so tests drive it with a real EventStore and a
real controller without Ray Serve in between.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trtseg
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from trtseg.config import ApiConfig, PusherConfig

from deployments import (
    auth,
    routes_analytics,
    routes_cameras,
    routes_clips,
    routes_events,
    routes_incidents,
    routes_infer,
    routes_system,
    routes_webhooks,
)
from deployments.auth import require_ack, require_read, require_write
from deployments.context import ApiContext
from deployments.control import CameraConflict, CameraNotFound, ControlError, ControlPlane, InvalidRequest

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
DESCRIPTION = """\
trtseg's HTTP API: cameras (add, change, remove, live annotated views), their analytics (zones,
lines, rules, tracker; live counts per zone), incidents (filters, key frames, acknowledgement),
events with key frames, on-demand segmentation and metrics. Two roles: the admin token may change
anything, the viewer token reads and acknowledges incidents; tokens go in `Authorization: Bearer
<token>` only (reads need one with `token_for_reads` or a viewer token). Media the browser loads itself
uses short-lived signed links from `POST /auth/links`. The web dashboard is at `/`.
"""
CONTROL_STATUS = {CameraNotFound: 404, CameraConflict: 409, InvalidRequest: 422}


def _request_id(request: Request) -> str:
    return getattr(request.state, "request_id", None) or "-"


def _problem(request: Request, status_code: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    rid = _request_id(request)
    return JSONResponse(
        {"detail": detail, "request_id": rid}, status_code=status_code, headers={**(headers or {}), "X-Request-ID": rid}
    )


def _install_handlers(app: FastAPI, ctx: ApiContext) -> None:
    @app.middleware("http")
    async def request_context(request: Request, call_next: Any) -> Any:
        incoming = request.headers.get("x-request-id", "")
        request.state.request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:
            logger.exception("unhandled error request_id=%s path=%s", request.state.request_id, request.url.path)
            response = _problem(request, 500, "internal error; quote the request id when reporting it")
        route = request.scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        ctx.metrics.observe(request.method, template, response.status_code, time.perf_counter() - started)
        response.headers["X-Request-ID"] = request.state.request_id
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return _problem(request, error.status_code, error.detail, dict(error.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in error.errors()
        ]
        return _problem(request, 422, problems)

    @app.exception_handler(ControlError)
    async def control_error(request: Request, error: ControlError) -> JSONResponse:
        status_code = next((code for kind, code in CONTROL_STATUS.items() if isinstance(error, kind)), 503)
        if status_code == 404:
            detail = (
                f"camera '{error}' not found" if str(error) and " " not in str(error) else str(error) or "not found"
            )
        else:
            detail = str(error)
        headers = {"Retry-After": "2"} if status_code == 503 else None
        return _problem(request, status_code, detail, headers)


def create_app(
    control: ControlPlane,
    store: Any,
    config: ApiConfig,
    *,
    pusher: PusherConfig | None = None,
    keyframe_dir: Path | None = None,
    clip_dir: Path | None = None,
    outbound: Any = None,
    webhooks: Sequence[Any] = (),
) -> FastAPI:
    """The whole API. ``store`` is a migrated trtseg.db.EventStore; ``pusher`` gives the HLS directory;
    ``keyframe_dir`` lets the API read key frames itself (else it asks the controller); ``outbound``
    (a GuardPolicy) is what camera source and webhook URLs set through the API may reach; ``webhooks``
    are the configuration file's (``outbound.webhooks``), listed read-only beside the stored ones."""
    ctx = ApiContext(
        control=control,
        store=store,
        config=config,
        pusher=pusher or PusherConfig(),
        keyframe_dir=keyframe_dir,
        outbound=outbound,
    )
    app = FastAPI(
        title="trtseg",
        version=trtseg.__version__,
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "system", "description": "Liveness, readiness, versions, configuration, metrics."},
            {"name": "cameras", "description": "Camera registry, live views and HLS files."},
            {"name": "analytics", "description": "Zones, lines, rules and tracker per camera; live zone counts."},
            {"name": "incidents", "description": "Incidents per tracked object and rule, key frames, acknowledgement."},
            {"name": "events", "description": "Detected events and their key frames."},
            {"name": "inference", "description": "Segmentation of an uploaded image."},
            {"name": "webhooks", "description": "Webhook receivers of incident messages (admin only)."},
            {"name": "dashboard", "description": "The web page."},
        ],
    )
    app.state.ctx = ctx
    read, write, ack = require_read(config), require_write(config), require_ack(config)
    app.include_router(auth.build_router(config, read))
    app.include_router(routes_system.build_router(read))
    app.include_router(routes_cameras.build_router(read, write))
    app.include_router(routes_analytics.build_router(read, write))
    app.include_router(routes_incidents.build_router(read, write, ack))
    app.include_router(routes_clips.build_router(read, clip_dir))
    app.include_router(routes_events.build_router(read))
    app.include_router(routes_infer.build_router(write))
    app.include_router(routes_webhooks.build_router(write, webhooks))
    _install_handlers(app, ctx)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )

    @app.get("/", include_in_schema=False)
    async def dashboard(request: Request) -> Any:
        if not request.url.path.endswith("/"):  # relative URLs in the page need the trailing slash
            return RedirectResponse(request.url.path + "/", status_code=308)
        return FileResponse(
            STATIC_DIR / "index.html",
            media_type="text/html; charset=utf-8",
            headers={"Cache-Control": "no-cache", **routes_system.PAGE_HEADERS},
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
