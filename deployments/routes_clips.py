"""An incident's clip: the source's own video from pre-capture before it opened to post-capture after it closed.

`GET /incidents/{incident_id}/clip` serves the MP4 (faststart, so a browser plays it while it
loads) with HTTP range requests: Starlette's `FileResponse` answers `Range` with 206 and
`Content-Range` (several ranges as multipart/byteranges), 416 with `Content-Range: bytes */<size>`
for a range past the end, 400 for a malformed one, and sends `Accept-Ranges: bytes`. The incident is
looked up in the incident store (404 when unknown), its clip through the clip index
(`trtseg.clips.layout`): 404 when it has none, when its clip failed or was removed by retention, and
while it is still being recorded (with `Retry-After`). The replica reads the clip directory
itself, so it must see it (one node, or a shared file system).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from trtseg.clips.layout import ClipLayout, ClipPathError

from deployments.context import get_context
from deployments.models import Problem
from deployments.routes_events import _store_call
from deployments.routes_incidents import ERRORS, _incident_id

logger = logging.getLogger(__name__)

IncidentLookup = Callable[[str], Any]  # incident id -> the incident, or None when unknown (synchronous)
RECORDING_RETRY_S = 5
# A pointer left 'recording' this long belongs to a recording whose process died (clips are capped at an hour).
STALE_RECORDING_S = 2 * 3600.0
MEDIA_TYPE = "video/mp4"


class ClipUnavailable(Exception):
    """The incident has no clip to serve now; ``retry_after_s`` when it will have one."""

    def __init__(self, detail: str, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


def _age_s(layout: ClipLayout, incident_id: str) -> float:
    try:
        return time.time() - layout.pointer(incident_id).stat().st_mtime
    except OSError:
        return 0.0


def locate_clip(layout: ClipLayout, incident_id: str) -> tuple[Path, os.stat_result]:
    """The clip file of an incident and its stat, or ClipUnavailable saying why not."""
    pointer = layout.read_pointer(incident_id)
    if pointer is None:
        raise ClipUnavailable(f"incident '{incident_id}' has no clip")
    status = pointer.get("status")
    if status == "recording" and _age_s(layout, incident_id) > STALE_RECORDING_S:
        raise ClipUnavailable(f"the clip of incident '{incident_id}' was interrupted (its camera's decoder stopped)")
    if status == "recording":
        raise ClipUnavailable(
            f"the clip of incident '{incident_id}' is still being recorded; it is ready shortly after the "
            "incident closes",
            RECORDING_RETRY_S,
        )
    if status != "ready" or not pointer.get("clip"):
        raise ClipUnavailable(f"incident '{incident_id}' has no clip: {pointer.get('error') or status}")
    try:
        path = layout.resolve(str(pointer["clip"]))
        stat = path.stat()
    except ClipPathError:
        logger.warning("clip path refused incident_id=%s", incident_id)
        raise ClipUnavailable(f"incident '{incident_id}' has no readable clip") from None
    except OSError:
        raise ClipUnavailable(f"the clip of incident '{incident_id}' was removed") from None
    return path, stat


def build_router(read: Any, clip_dir: Path | None, lookup: IncidentLookup | None = None) -> APIRouter:
    """The clip route; ``lookup`` defaults to the app's incident store (``ApiContext.incidents.get``)."""
    router = APIRouter(tags=["incidents"], responses=ERRORS)
    layout = ClipLayout(clip_dir) if clip_dir is not None else None

    @router.api_route(
        "/incidents/{incident_id}/clip",
        methods=["GET", "HEAD"],
        summary="An incident's clip",
        description="The camera's own video of the incident (MP4, H.264 as the camera sends it, never re-encoded): "
        "from `pre_capture_s` before it opened to `post_capture_s` after the last incident of the same recording "
        "closed; overlapping incidents share one clip. A long clip is capped (its sidecar says `capped`). Supports "
        "`Range` requests (206, 416). 404: unknown incident, no clip (its severity gets none, it failed or "
        "retention removed it) or still recording (`Retry-After`).",
        response_class=FileResponse,
        responses={
            200: {"content": {MEDIA_TYPE: {}}, "description": "The whole clip."},
            206: {"content": {MEDIA_TYPE: {}}, "description": "The requested byte range(s)."},
            416: {"description": "The range starts past the end of the clip."},
            404: {"model": Problem, "description": "No incident with this id, or it has no clip (yet)."},
        },
        dependencies=[Depends(read)],
    )
    async def clip(request: Request, incident_id: str = _incident_id()) -> Any:
        path, stat = await _locate(request, incident_id)
        return FileResponse(
            path,
            media_type=MEDIA_TYPE,
            stat_result=stat,
            filename=f"{incident_id}.mp4",
            content_disposition_type="inline",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    @router.get(
        "/incidents/{incident_id}/clip/info",
        response_model=ClipInfoOut,
        summary="What an incident's clip holds",
        description="The clip's first and last capture times, so a player can place the incident's trajectory and "
        "key frames on the video (video time = capture time - `start_ts`), whether it was capped, the incidents "
        "that share it, and why it ended. 404 as for the clip itself.",
        responses={404: {"model": Problem, "description": "No incident with this id, or it has no clip (yet)."}},
        dependencies=[Depends(read)],
    )
    async def clip_info(request: Request, incident_id: str = _incident_id()) -> Any:
        path, _ = await _locate(request, incident_id)
        try:
            data = await run_in_threadpool(lambda: json.loads(path.with_suffix(".json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            raise HTTPException(
                404, detail=f"the clip of incident '{incident_id}' has no readable description"
            ) from None
        return ClipInfoOut.model_validate(data)

    async def _locate(request: Request, incident_id: str) -> tuple[Path, os.stat_result]:
        find = lookup or get_context(request).incidents.get
        incident = await _store_call(find, incident_id)
        if incident is None:
            raise HTTPException(404, detail=f"incident '{incident_id}' not found")
        if layout is None:
            raise HTTPException(404, detail="clips are not kept on this server (evidence.clip_dir)")
        try:
            return await run_in_threadpool(locate_clip, layout, incident_id)
        except ClipUnavailable as error:
            headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s else None
            raise HTTPException(404, detail=str(error), headers=headers) from None

    return router


class ClipInfoOut(BaseModel):
    """An incident's clip as its sidecar describes it."""

    recording_id: str
    camera_id: str
    site: str
    incident_ids: list[str] = Field(description="Every incident this clip shows (overlapping incidents share one).")
    start_ts: float | None = Field(description="Capture time (epoch seconds) of the clip's first picture.")
    end_ts: float | None = Field(description="Capture time of its last picture.")
    duration_s: float
    capped: bool = Field(description="Cut at max_clip_s while an incident was still open.")
    pre_capture_short: bool = Field(description="The buffer did not reach back the whole pre-capture.")
    ended_by: str = Field(description="post_capture, capped, source_changed, stalled or stopped.")
    codec: str | None
    width: int
    height: int
    bytes: int
