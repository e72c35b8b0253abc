"""Events from the database, their key frames and grouped counts.

The store is synchronous (SQLAlchemy), so every call runs in Starlette's worker threads.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from trtseg.db.models import MAX_LIMIT, EventCount, EventOut, EventPage, EventQuery, as_utc

from deployments.context import ApiContext, get_context
from deployments.models import Counts, Problem

logger = logging.getLogger(__name__)

EVENT_ID = r"^[A-Za-z0-9_-]{1,64}$"
GROUP_KEYS = ("site", "camera_id", "class_name", "status", "day")
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or wrong bearer token."},
    503: {"model": Problem, "description": "The event database is unavailable."},
}


def _text(description: str) -> Any:
    """A fresh optional text filter (FastAPI must not share one FieldInfo between parameters)."""
    return Query(None, min_length=1, max_length=128, description=description)


def as_dict(value: Any) -> dict[str, Any]:
    """An event as JSON-ready data, whatever shape the store hands back."""
    if isinstance(value, BaseModel):
        data = value.model_dump(mode="json")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    else:
        data = dict(value)
    for key in ("keyframe_raw_jpeg", "keyframe_annotated_jpeg"):
        data.pop(key, None)
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in data.items()}


async def _store_call(function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await run_in_threadpool(function, *args, **kwargs)
    except (ValueError, TypeError) as error:
        raise HTTPException(422, detail=str(error)) from None
    except HTTPException:
        raise
    except Exception as error:  # database down or refusing: the API stays up and says so
        logger.warning("event store call failed function=%s error=%r", getattr(function, "__name__", "?"), error)
        raise HTTPException(
            503, detail=f"event database unavailable: {type(error).__name__}", headers={"Retry-After": "2"}
        ) from None


def _utc_param(name: str, value: datetime | None) -> datetime | None:
    """A time query parameter in UTC (naive taken as UTC), or 422 when it has no UTC equivalent."""
    try:
        return as_utc(value)
    except ValueError as error:
        raise HTTPException(422, detail=[{"loc": ["query", name], "msg": str(error), "type": "value_error"}]) from None


def _event_query(filters: dict[str, Any]) -> EventQuery:
    try:
        return EventQuery.model_validate({k: v for k, v in filters.items() if v is not None})
    except ValidationError as error:
        problems = [{"loc": ["query", *map(str, e["loc"])], "msg": e["msg"], "type": e["type"]} for e in error.errors()]
        raise HTTPException(422, detail=problems) from None


def build_router(read: Any) -> APIRouter:
    router = APIRouter(tags=["events"], responses=ERRORS, dependencies=[Depends(read)])

    @router.get(
        "/events",
        response_model=EventPage,
        summary="Search events",
        description="Filtered by site, camera, class, status and start time; ordered by start time (newest "
        "first by default). Pass the answer's `next_cursor` as `cursor`, with the same filters, for the next page.",
    )
    async def list_events(
        site: str | None = _text("Only this site."),
        camera_id: str | None = _text("Only this camera."),
        class_name: str | None = _text("Only this class."),
        status: Literal["open", "closed"] | None = Query(None),
        since: datetime | None = Query(None, description="Events started at or after (ISO 8601, UTC if naive)."),
        until: datetime | None = Query(None, description="Events started before (ISO 8601, UTC if naive)."),
        order: Literal["asc", "desc"] = Query("desc", description="By start time: 'desc' newest first, or 'asc'."),
        cursor: str | None = Query(None, max_length=512, description="next_cursor of the previous page."),
        limit: int = Query(50, ge=1, le=MAX_LIMIT, description=f"Events per page, 1..{MAX_LIMIT}."),
        ctx: ApiContext = Depends(get_context),
    ) -> EventPage:
        query = _event_query(
            {
                "site": site,
                "camera_id": camera_id,
                "class_name": class_name,
                "status": status,
                "since": since,
                "until": until,
                "order": order,
                "cursor": cursor,
                "limit": limit,
            }
        )
        return await _store_call(ctx.store.query, query)

    @router.get(
        "/events/counts",
        response_model=Counts,
        summary="Event counts",
        description="Number of events grouped by any of site, camera_id, class_name, status and day (UTC).",
    )
    async def counts(
        group_by: str = Query("class_name,day", max_length=128, examples=["site,class_name,day"]),
        since: datetime | None = Query(None, description="Events started at or after (ISO 8601)."),
        until: datetime | None = Query(None, description="Events started before (ISO 8601)."),
        site: str | None = _text("Only this site."),
        camera_id: str | None = _text("Only this camera."),
        class_name: str | None = _text("Only this class."),
        ctx: ApiContext = Depends(get_context),
    ) -> Counts:
        keys = [key.strip() for key in group_by.split(",") if key.strip()]
        bad = [key for key in keys if key not in GROUP_KEYS]
        if not keys or bad or len(set(keys)) != len(keys):
            raise HTTPException(422, detail=f"group_by takes distinct keys among {', '.join(GROUP_KEYS)}")
        since, until = _utc_param("since", since), _utc_param("until", until)
        if since and until and since >= until:
            raise HTTPException(422, detail="'since' must be earlier than 'until'")
        rows = await _store_call(
            ctx.store.counts, keys, since=since, until=until, site=site, camera_id=camera_id, class_name=class_name
        )
        return Counts(group_by=keys, rows=[EventCount.model_validate(as_dict(row)) for row in rows])

    @router.get("/events/{event_id}", response_model=EventOut, summary="One event", responses={404: {"model": Problem}})
    async def get_event(event_id: str = PathParam(pattern=EVENT_ID), ctx: ApiContext = Depends(get_context)) -> Any:
        event = await _store_call(ctx.store.get, event_id)
        if event is None:
            raise HTTPException(404, detail=f"event '{event_id}' not found")
        return event

    @router.get(
        "/events/{event_id}/keyframe",
        summary="An event's key frame",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": Problem}},
    )
    async def keyframe(
        event_id: str = PathParam(pattern=EVENT_ID),
        kind: Literal["raw", "annotated"] = Query("annotated"),
        ctx: ApiContext = Depends(get_context),
    ) -> Response:
        data = await _read_keyframe(ctx, event_id, kind)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})

    return router


async def _read_keyframe(ctx: ApiContext, event_id: str, kind: str) -> bytes:
    """From the key frame directory when this replica can see the file, else through the controller
    (which runs where the sink writes them; replicas on other nodes see no files)."""
    event = await _store_call(ctx.store.get, event_id)
    if event is None:
        raise HTTPException(404, detail=f"event '{event_id}' not found")
    relative = as_dict(event).get(f"keyframe_{kind}_path")
    if ctx.keyframe_dir is not None and relative:
        from trtseg.keyframes import KeyframePathError, KeyframeStore

        try:
            return await run_in_threadpool(KeyframeStore(ctx.keyframe_dir).read, relative)
        except KeyframePathError:
            logger.warning("key frame path refused event_id=%s kind=%s", event_id, kind)
            raise HTTPException(404, detail=f"event '{event_id}' has no readable {kind} key frame") from None
        except FileNotFoundError:
            pass
    data = await ctx.control.read_keyframe(event_id, kind)
    if not data:
        raise HTTPException(404, detail=f"event '{event_id}' has no {kind} key frame")
    return data
