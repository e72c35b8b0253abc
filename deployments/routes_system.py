"""Liveness, readiness, versions, configuration summary and Prometheus metrics."""

from __future__ import annotations

import logging
import platform
import re
from typing import Any

import trtseg
from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from deployments.context import ApiContext, get_context
from deployments.control import ControlError
from deployments.metrics import camera_lines, incident_lines, zone_lines
from deployments.models import Liveness, Problem, Readiness, VersionInfo

logger = logging.getLogger(__name__)

READY_STATES = {"ok", "ready", "live", "running", "alive", "healthy", "up", "true"}
# The dashboard's own page: scripts and styles only from the API's origin (no inline code), media from
# it too (signed links) or blob:/data: URLs, no framing, no plugins.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
SECRET_KEY = re.compile(r"(^|_)(token|password|passwd|secret|database_url|api_key|private_key)$", re.IGNORECASE)


def _component_ready(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, dict):
        if "ready" in value:
            return bool(value["ready"])
        if "ok" in value:
            return bool(value["ok"])
        return str(value.get("state", value.get("status", ""))).lower() in READY_STATES
    return str(value).lower() in READY_STATES


def hide_secrets(value: Any, key: str = "") -> Any:
    """Replace anything that looks like a credential by '***', however deep it sits."""
    if isinstance(value, dict):
        return {k: hide_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [hide_secrets(v, key) for v in value]
    if isinstance(value, str) and value and SECRET_KEY.search(key):
        return "***"
    if isinstance(value, str) and "://" in value and "@" in value.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = value.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return value


async def _incident_lines(ctx: ApiContext) -> list[str]:
    """Open incidents from the database; a down database only leaves them out (and says so)."""
    try:
        rows = await run_in_threadpool(ctx.incidents.open_counts)
    except Exception as error:  # metrics must answer even when the database does not
        logger.warning("open incident counts unavailable error=%s", type(error).__name__)
        return ["# TYPE trtseg_incident_database_up gauge", "trtseg_incident_database_up 0"]
    return ["# TYPE trtseg_incident_database_up gauge", "trtseg_incident_database_up 1", *incident_lines(rows)]


def build_router(read: Any) -> APIRouter:
    router = APIRouter(tags=["system"])

    @router.get("/health", response_model=Liveness, summary="Liveness", description="The API process answers.")
    async def health() -> Liveness:
        return Liveness(status="ok")

    @router.get(
        "/ready",
        response_model=Readiness,
        summary="Readiness",
        description="Each component's state from the controller; 503 when any is not ready or the controller "
        "cannot be reached.",
        responses={503: {"model": Readiness, "description": "Not ready."}},
        dependencies=[Depends(read)],
    )
    async def ready(ctx: ApiContext = Depends(get_context)) -> Any:
        try:
            components = await ctx.control.health()
        except ControlError as error:
            body = Readiness(ready=False, components={}, detail=str(error))
            return JSONResponse(body.model_dump(), status_code=503)
        parts = components.get("components", components) if isinstance(components, dict) else {}
        if isinstance(components, dict) and "ready" in components and isinstance(components["ready"], bool):
            ok = components["ready"]
        else:
            ok = bool(parts) and all(_component_ready(v) for v in parts.values())
        body = Readiness(ready=ok, components=parts, detail=None if ok else "some components are not ready")
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @router.get("/version", response_model=VersionInfo, summary="Versions", dependencies=[Depends(read)])
    async def version() -> VersionInfo:
        import fastapi
        import ray

        return VersionInfo(
            trtseg=trtseg.__version__,
            python=platform.python_version(),
            ray=ray.__version__,
            fastapi=fastapi.__version__,
        )

    @router.get(
        "/config",
        summary="Configuration summary",
        description="The running system's configuration as the controller reports it, with every secret hidden.",
        responses={503: {"model": Problem}},
        dependencies=[Depends(read)],
    )
    async def config(ctx: ApiContext = Depends(get_context)) -> dict[str, Any]:
        summary = await ctx.control.config_summary()
        api = ctx.config.model_dump(mode="json")
        return hide_secrets({**summary, "api": api})

    @router.get(
        "/metrics",
        response_class=PlainTextResponse,
        summary="Prometheus metrics",
        description="This replica's request counts and latencies, each camera's figures and live objects per "
        "zone (trtseg_zone_objects) from the controller, and the open incidents from the database "
        "(trtseg_incidents_open), in the Prometheus text format. The actors' own metrics (segmenter batch "
        "sizes, latencies, queue lengths, incidents opened, tracker and rule time) are exported by Ray's "
        "metrics agent on every node: scrape the targets Ray writes to "
        "/tmp/ray/prom_metrics_service_discovery.json (see Ray's 'Collecting and monitoring metrics').",
        responses={200: {"content": {"text/plain": {"example": "trtseg_api_requests_total{...} 3\n"}}}},
        dependencies=[Depends(read)],
    )
    async def metrics(ctx: ApiContext = Depends(get_context)) -> Response:
        lines = ctx.metrics.render()
        try:
            cameras = await ctx.control.list_cameras()
            lines += ["# TYPE trtseg_controller_up gauge", "trtseg_controller_up 1", *camera_lines(cameras)]
            lines += zone_lines(cameras)
        except ControlError:
            lines += ["# TYPE trtseg_controller_up gauge", "trtseg_controller_up 0"]
        lines += await _incident_lines(ctx)
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4; charset=utf-8")

    return router
