"""Incidents from the database (filters, cursor pages, key frames per stage, the outline track drawn over
the clip) and their acknowledgement.

The outline track lives in an incident's ``details`` (``trtseg.analytics.evidence.OutlineRecorder``
says why); it is up to ~30 kB, so listings and the single incident leave it out and
``GET /incidents/{id}/track`` serves it.

Reads follow the events' rules (token only with ``token_for_reads``); acknowledging changes state,
so it needs the token like every mutating endpoint. The store is synchronous (SQLAlchemy), so every
call runs in Starlette's worker threads.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from trtseg.analytics.evidence import OUTLINE_KEY
from trtseg.db.incident_models import (
    INCIDENT_ID_PATTERN,
    AckRequest,
    AckResult,
    BulkAckRequest,
    IncidentOut,
    IncidentPage,
    IncidentQuery,
)
from trtseg.db.models import MAX_LIMIT, CursorError, decode_cursor

from deployments.context import ApiContext, get_context
from deployments.models import Problem
from deployments.routes_events import _store_call, _text

logger = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or wrong bearer token."},
    503: {"model": Problem, "description": "The event database is unavailable."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No incident with this id."}}


def _incident_id() -> Any:
    """A fresh incident id path parameter (FastAPI must not share one FieldInfo between routes)."""
    return PathParam(pattern=INCIDENT_ID_PATTERN, description="Incident id.")


def _problem(loc: list[Any], message: str) -> HTTPException:
    return HTTPException(422, detail=[{"loc": loc, "msg": message, "type": "value_error"}])


def incident_query(filters: dict[str, Any], cursor: str | None) -> IncidentQuery:
    """The validated query, or 422 naming the parameter (a cursor is checked against the filters)."""
    try:
        query = IncidentQuery.model_validate({k: v for k, v in filters.items() if v is not None})
    except ValidationError as error:
        problems = []
        for e in error.errors():
            loc = list(map(str, e["loc"])) or (["since"] if "since" in e["msg"] else [])
            problems.append({"loc": ["query", *loc], "msg": e["msg"], "type": e["type"]})
        raise HTTPException(422, detail=problems) from None
    if cursor is not None:
        try:
            decode_cursor(cursor, query)
        except CursorError as error:
            raise _problem(["query", "cursor"], str(error)) from None
        query = query.model_copy(update={"cursor": cursor})
    return query


class TrackShape(BaseModel):
    """The rule's zone (closed) or line as it was when the incident opened."""

    name: str
    points: list[tuple[float, float]] = Field(description="(x, y) in 0..1 of the frame.")
    closed: bool = Field(description="True for a zone (polygon), false for a line.")


class OutlineSample(BaseModel):
    """The object's mask outline(s) in one analysed frame."""

    t: float = Field(description="Seconds since the incident started.")
    ts: float = Field(description="Capture time (epoch seconds): video time = ts - the clip's start_ts.")
    outlines: list[list[tuple[float, float]]] = Field(description="Polygons of (x, y) in 0..1 of the frame.")


class OutlineTrackOut(BaseModel):
    """What the dashboard draws over an incident's clip: its zone or line and the object's outline over time."""

    incident_id: str
    started_ts: float | None = Field(description="Epoch seconds of the incident's start (null: no track stored).")
    every_s: float | None = Field(description="Seconds between samples (doubles when a long incident thins them).")
    shapes: list[TrackShape]
    samples: list[OutlineSample]


def outline_track(incident: IncidentOut) -> OutlineTrackOut:
    """The stored track of an incident, or an empty one (older incidents, or stored data that does not parse)."""
    raw = incident.details.get(OUTLINE_KEY)
    empty = OutlineTrackOut(incident_id=incident.incident_id, started_ts=None, every_s=None, shapes=[], samples=[])
    if raw is None:
        return empty
    try:
        t0 = float(raw["t0"])
        return OutlineTrackOut(
            incident_id=incident.incident_id,
            started_ts=t0,
            every_s=float(raw["every_s"]),
            shapes=[TrackShape.model_validate(shape) for shape in raw["shapes"]],
            samples=[
                OutlineSample(t=float(t), ts=round(t0 + float(t), 3), outlines=polygons)
                for t, polygons in raw["samples"]
            ],
        )
    except (KeyError, TypeError, ValueError) as error:  # a row written by hand or by a future version
        logger.warning("outline track unreadable incident_id=%s error=%s", incident.incident_id, str(error)[:200])
        return empty


def without_track(incident: IncidentOut) -> IncidentOut:
    """The incident without its outline track (kept out of listings: up to ~30 kB each)."""
    if OUTLINE_KEY not in incident.details:
        return incident
    details = {k: v for k, v in incident.details.items() if k != OUTLINE_KEY}
    return incident.model_copy(update={"details": details})


def build_router(read: Any, write: Any, ack: Any = None) -> APIRouter:
    ack = ack or write  # acknowledging: its own permission (deployments.auth.require_ack: either role)
    router = APIRouter(tags=["incidents"], responses=ERRORS)

    @router.get(
        "/incidents",
        response_model=IncidentPage,
        summary="Search incidents",
        description="Incidents (one per tracked object and rule, or per zone and rule for count rules), filtered by "
        "site, camera, rule, zone, class, severity, status, acknowledgement and time. `since`/`until` select the "
        "incidents active in the window (last seen at or after `since`, started before `until`). Ordered by "
        "start time (newest first by default); pass the answer's `next_cursor` as `cursor`, with the same "
        "filters, for the next page.",
        dependencies=[Depends(read)],
    )
    async def list_incidents(
        site: str | None = _text("Only this site."),
        camera_id: str | None = _text("Only this camera."),
        rule: str | None = Query(None, min_length=1, max_length=64, description="Only this rule."),
        zone: str | None = Query(None, min_length=1, max_length=64, description="Only this zone."),
        class_name: str | None = _text("Only this class."),
        severity: Literal["alert", "detection"] | None = Query(None, description="Only alerts or only detections."),
        status: Literal["open", "closed"] | None = Query(None, description="Only open or only closed incidents."),
        acknowledged: bool | None = Query(None, description="Only acknowledged (true) or unacknowledged (false)."),
        since: datetime | None = Query(None, description="Last seen at or after (ISO 8601, UTC if naive)."),
        until: datetime | None = Query(None, description="Started before (ISO 8601, UTC if naive)."),
        order: Literal["asc", "desc"] = Query("desc", description="By start time: 'desc' newest first, or 'asc'."),
        cursor: str | None = Query(None, max_length=512, description="next_cursor of the previous page."),
        limit: int = Query(50, ge=1, le=MAX_LIMIT, description=f"Incidents per page, 1..{MAX_LIMIT}."),
        ctx: ApiContext = Depends(get_context),
    ) -> IncidentPage:
        filters = {
            "site": site,
            "camera_id": camera_id,
            "rule": rule,
            "zone": zone,
            "class_name": class_name,
            "severity": severity,
            "status": status,
            "acknowledged": acknowledged,
            "since": since,
            "until": until,
            "order": order,
            "limit": limit,
        }
        page: IncidentPage = await _store_call(ctx.incidents.query, incident_query(filters, cursor))
        return page.model_copy(update={"items": [without_track(item) for item in page.items]})

    @router.post(
        "/incidents/ack",
        response_model=AckResult,
        summary="Acknowledge several incidents",
        description="Marks every listed incident acknowledged (an earlier acknowledgement is kept) and says "
        "which ids do not exist. Needs a token of either role (admin or viewer) when tokens are configured.",
        dependencies=[Depends(ack)],
    )
    async def acknowledge_many(request: BulkAckRequest, ctx: ApiContext = Depends(get_context)) -> AckResult:
        return await _store_call(ctx.incidents.acknowledge, request.ids, request.by)

    @router.get(
        "/incidents/{incident_id}",
        response_model=IncidentOut,
        summary="One incident",
        responses=NOT_FOUND,
        dependencies=[Depends(read)],
    )
    async def get_incident(incident_id: str = _incident_id(), ctx: ApiContext = Depends(get_context)) -> Any:
        incident = await _store_call(ctx.incidents.get, incident_id)
        if incident is None:
            raise HTTPException(404, detail=f"incident '{incident_id}' not found")
        return without_track(incident)

    @router.get(
        "/incidents/{incident_id}/track",
        response_model=OutlineTrackOut,
        summary="An incident's outline track",
        description="The rule's zone or line and the tracked object's mask outline over time (up to 5 samples a "
        "second, at most 150 samples: a long incident keeps its whole span at a coarser pace), in 0..1 of the "
        "frame, each sample with its capture time, so a player draws them over the clip (video time = `ts` - "
        "the clip's `start_ts`, from `/clip/info`). Empty for incidents stored before outlines were kept.",
        responses=NOT_FOUND,
        dependencies=[Depends(read)],
    )
    async def get_track(incident_id: str = _incident_id(), ctx: ApiContext = Depends(get_context)) -> Any:
        incident = await _store_call(ctx.incidents.get, incident_id)
        if incident is None:
            raise HTTPException(404, detail=f"incident '{incident_id}' not found")
        return outline_track(incident)

    @router.post(
        "/incidents/{incident_id}/ack",
        response_model=IncidentOut,
        summary="Acknowledge an incident",
        description="Marks the incident acknowledged (by whom, optionally); acknowledging it again keeps the first "
        "acknowledgement. The incident's own state is untouched: an open incident stays open and is still "
        "updated. Needs a token of either role (admin or viewer) when tokens are configured.",
        responses=NOT_FOUND,
        dependencies=[Depends(ack)],
    )
    async def acknowledge(
        incident_id: str = _incident_id(),
        request: AckRequest | None = Body(None),
        ctx: ApiContext = Depends(get_context),
    ) -> Any:
        by = request.by if request is not None else None
        result: AckResult = await _store_call(ctx.incidents.acknowledge, [incident_id], by)
        if not result.acknowledged:
            raise HTTPException(404, detail=f"incident '{incident_id}' not found")
        return without_track(await _store_call(ctx.incidents.get, incident_id))

    @router.get(
        "/incidents/{incident_id}/keyframe/{stage}/{kind}",
        summary="An incident's key frame",
        description="The JPEG taken when the incident opened (`open`), became an alert (`alert`) or closed "
        "(`close`); `raw` is the camera's picture, `annotated` shows the mask outline and the zone.",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}, **NOT_FOUND},
        dependencies=[Depends(read)],
    )
    async def keyframe(
        incident_id: str = _incident_id(),
        stage: Literal["open", "alert", "close"] = PathParam(description="When the picture was taken."),
        kind: Literal["raw", "annotated"] = PathParam(description="The camera's picture or the annotated one."),
        ctx: ApiContext = Depends(get_context),
    ) -> Response:
        data = await _read_keyframe(ctx, incident_id, stage, kind)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})

    return router


async def _read_keyframe(ctx: ApiContext, incident_id: str, stage: str, kind: str) -> bytes:
    """From the key frame directory when this replica can see the file, else through the controller
    (which runs where the sink writes them; replicas on other nodes see no files)."""
    incident = await _store_call(ctx.incidents.get, incident_id)
    if incident is None:
        raise HTTPException(404, detail=f"incident '{incident_id}' not found")
    relative = incident.keyframe_paths.get(stage, {}).get(kind)
    if not relative:
        raise HTTPException(404, detail=f"incident '{incident_id}' has no {kind} key frame at '{stage}'")
    if ctx.keyframe_dir is not None:
        from trtseg.keyframes import KeyframePathError, KeyframeStore

        try:
            return await run_in_threadpool(KeyframeStore(ctx.keyframe_dir).read, relative)
        except KeyframePathError:
            logger.warning("key frame path refused incident_id=%s stage=%s kind=%s", incident_id, stage, kind)
            raise HTTPException(404, detail=f"incident '{incident_id}' has no readable {kind} key frame") from None
        except FileNotFoundError:
            pass
    data = await ctx.control.read_incident_keyframe(incident_id, stage, kind)
    if not data:
        raise HTTPException(404, detail=f"incident '{incident_id}' has no {kind} key frame at '{stage}'")
    return data
