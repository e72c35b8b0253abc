"""A camera's analytics (tracker, zones, lines, rules) and the live object counts per zone.

Changing a camera's analytics goes the way of every camera change at run time: the controller's
``update_camera`` (validated, the camera's pipeline restarted with it, written to the camera
registry in the database, so it survives a restart). This module adds the checks only the running
system can make: a rule's classes must be classes the model reports.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, ValidationError
from trtseg.config import CameraConfig
from trtseg.config.analytics import AnalyticsConfig
from trtseg.config.camera import CAMERA_ID_PATTERN

from deployments.context import ApiContext, get_context
from deployments.models import Problem

logger = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or wrong bearer token."},
    503: {"model": Problem, "description": "The controller is unavailable."},
}
ANALYTICS_EXAMPLE = {
    "zones": [{"name": "building_safe_zone", "points": [[0.1, 0.2], [0.9, 0.2], [0.9, 0.95], [0.1, 0.95]]}],
    "rules": [
        {
            "kind": "presence",
            "name": "cable_outside",
            "classes": ["charging_cable"],
            "zone": "building_safe_zone",
            "severity": "detection",
            "label": "safe",
            "escalate": {"min_outside": 0.4, "label": "danger"},
        }
    ],
}


class ZoneCount(BaseModel):
    """Objects of one class in one zone of one camera, now."""

    camera_id: str
    site: str
    zone: str
    class_name: str
    count: int = Field(ge=0)


class ZoneCounts(BaseModel):
    """Live counts per camera, zone and class, and the cameras that reported none."""

    items: list[ZoneCount]
    unavailable: list[str] = Field(
        default_factory=list, description="Cameras whose pipeline gave no counts now (not running, or starting)."
    )


def _camera_id() -> Any:
    return PathParam(pattern=CAMERA_ID_PATTERN, description="Camera id.", examples=["cam1"])


def _config(raw: Mapping[str, Any]) -> dict[str, Any]:
    config = raw.get("config")
    return dict(config) if isinstance(config, Mapping) else {}


def _analytics(raw: Mapping[str, Any]) -> AnalyticsConfig:
    return AnalyticsConfig.model_validate(_config(raw).get("analytics") or {})


def unknown_classes(analytics: AnalyticsConfig, names: Iterable[str]) -> list[dict[str, Any]]:
    """422 problems for rule classes the model lacks (a rule on them would never fire)."""
    known = set(names)
    problems = []
    for index, rule in enumerate(analytics.rules):
        missing = [name for name in rule.classes if name not in known]
        if missing:
            problems.append(
                {
                    "loc": ["body", "rules", index, "classes"],
                    "msg": f"rule '{rule.name}': {', '.join(missing)} not among the model's classes "
                    f"({', '.join(sorted(known))})",
                    "type": "value_error",
                }
            )
    return problems


def zone_rows(cameras: Iterable[Mapping[str, Any]]) -> tuple[list[ZoneCount], list[str]]:
    """Counts from each camera's pusher figures (``stats.output.zone_counts``: zone -> class -> objects)."""
    rows: list[ZoneCount] = []
    missing: list[str] = []
    for camera in cameras:
        camera_id = str(camera.get("id", "?"))
        output = (camera.get("stats") or {}).get("output") or {}
        counts = output.get("zone_counts") if isinstance(output, Mapping) else None
        if not isinstance(counts, Mapping):
            missing.append(camera_id)
            continue
        site = str(camera.get("site") or _config(camera).get("site") or "")
        for zone, classes in sorted(counts.items()):
            for class_name, count in sorted((classes or {}).items()):
                if isinstance(count, int | float) and not isinstance(count, bool):
                    rows.append(
                        ZoneCount(camera_id=camera_id, site=site, zone=zone, class_name=class_name, count=count)
                    )
    return rows, missing


def build_router(read: Any, write: Any) -> APIRouter:
    router = APIRouter(tags=["analytics"], responses=ERRORS)

    @router.get(
        "/cameras/{camera_id}/analytics",
        response_model=AnalyticsConfig,
        summary="A camera's zones, lines, rules and tracker",
        responses={404: {"model": Problem, "description": "No camera with this id."}},
        dependencies=[Depends(read)],
    )
    async def get_analytics(camera_id: str = _camera_id(), ctx: ApiContext = Depends(get_context)) -> AnalyticsConfig:
        return _analytics(await ctx.control.get_camera(camera_id))

    @router.put(
        "/cameras/{camera_id}/analytics",
        response_model=AnalyticsConfig,
        summary="Replace a camera's zones, lines, rules and tracker",
        description="The body is the camera's whole `analytics` section. Points are (x, y) in 0..1 of the frame; "
        "polygons must be simple (no crossing edges) and not degenerate; rules may only name zones and lines "
        "of the body and classes the model reports (and, when the camera lists `classes`, among those). "
        "Applied like any camera change at run time: the camera's pipeline restarts with it and the change "
        "is kept in the database. Needs the bearer token when one is configured.",
        responses={404: {"model": Problem, "description": "No camera with this id (or it was removed meanwhile)."}},
        dependencies=[Depends(write)],
    )
    async def put_analytics(
        analytics: AnalyticsConfig = Body(examples=[ANALYTICS_EXAMPLE]),
        camera_id: str = _camera_id(),
        ctx: ApiContext = Depends(get_context),
    ) -> AnalyticsConfig:
        current = _config(await ctx.control.get_camera(camera_id))
        names = await ctx.control.model_names()
        if names and (problems := unknown_classes(analytics, names.values())):
            raise HTTPException(422, detail=problems)
        body = analytics.model_dump(mode="json")
        try:
            CameraConfig.model_validate({**current, "analytics": body, "id": camera_id})
        except ValidationError as error:
            problems = [
                {"loc": ["body", *[p for p in e["loc"] if p != "analytics"]], "msg": e["msg"], "type": e["type"]}
                for e in error.errors()
            ]
            raise HTTPException(422, detail=problems) from None
        updated = await ctx.control.update_camera(camera_id, {"analytics": body})
        logger.info(
            "camera analytics replaced camera_id=%s zones=%d lines=%d rules=%d",
            camera_id,
            len(analytics.zones),
            len(analytics.lines),
            len(analytics.rules),
        )
        return _analytics(updated) if _config(updated) else analytics

    @router.get(
        "/zones/counts",
        response_model=ZoneCounts,
        summary="Live objects per camera, zone and class",
        description="Tracked objects in each zone now, as each camera's pipeline counts them (by the zone's "
        "membership test). Cameras that are not running are listed under `unavailable`.",
        dependencies=[Depends(read)],
    )
    async def zone_counts(
        camera_id: str | None = Query(None, pattern=CAMERA_ID_PATTERN, description="Only this camera."),
        site: str | None = Query(None, min_length=1, max_length=128, description="Only this site."),
        zone: str | None = Query(None, min_length=1, max_length=64, description="Only this zone."),
        ctx: ApiContext = Depends(get_context),
    ) -> ZoneCounts:
        if camera_id is not None:
            cameras = [await ctx.control.get_camera(camera_id)]
        else:
            cameras = await ctx.control.list_cameras()
        if site is not None:
            cameras = [c for c in cameras if str(c.get("site") or _config(c).get("site") or "") == site]
        rows, missing = zone_rows(cameras)
        if zone is not None:
            rows = [row for row in rows if row.zone == zone]
        return ZoneCounts(items=rows, unavailable=missing)

    return router
