"""Camera registry (through the controller), live views (JPEG, MJPEG) and the HLS files of pushed streams."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import ValidationError
from trtseg.config import CameraConfig
from trtseg.config.camera import CAMERA_ID_PATTERN

from deployments.context import ApiContext, get_context
from deployments.control import CameraNotFound, ControlError
from deployments.models import CameraStatus, Problem, StreamUrls, WatchStatus
from deployments.viewers import ViewerTouches

logger = logging.getLogger(__name__)


def _camera_id() -> Any:
    """A fresh camera id path parameter (FastAPI must not share one FieldInfo between routes)."""
    return PathParam(pattern=CAMERA_ID_PATTERN, description="Camera id.", examples=["cam1"])


HLS_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\.(m3u8|ts|m4s|mp4)$")
HLS_TYPES = {
    "m3u8": "application/vnd.apple.mpegurl",
    "ts": "video/mp2t",
    "m4s": "video/iso.segment",
    "mp4": "video/mp4",
}
BOUNDARY = "trtsegframe"
KEEPALIVE_S = 5.0  # an unchanged picture is sent again this often, so idle proxies keep the stream
HLS_START_GRACE_S = 3.0  # an on-demand encoder's start, beyond its first segment: the playlist GET waits
HLS_POLL_S = 0.2  # how often a waiting playlist GET asks the pusher whether the new playlist is there
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or wrong bearer token."},
    404: {"model": Problem, "description": "No camera with this id."},
    503: {"model": Problem, "description": "The controller is unavailable."},
}
PATCH_EXAMPLE = {"inference_fps": 5, "confidence": 0.3}


def check_source(ctx: ApiContext, camera: CameraConfig) -> None:
    """Refuse sources outside the allow-list (and files outside ApiConfig.file_source_dir) with a 422."""
    from trtseg.sources import validate_source

    try:
        validate_source(camera.source, ctx.config.file_source_dir)
    except ValueError as error:
        raise HTTPException(422, detail=f"source refused: {error}") from None
    if ctx.outbound is not None and "://" in camera.source and not camera.source.startswith("file:"):
        # The server connects to it on the caller's behalf: no link-local, metadata or own-cluster
        # addresses (loopback only where outbound.allow_loopback says so), checked after resolution.
        from trtseg.outbound.urlguard import NETWORK_SCHEMES, OutboundUrlError, check_url

        try:
            check_url(camera.source, field="source", policy=ctx.outbound, schemes=NETWORK_SCHEMES)
        except OutboundUrlError as error:
            raise HTTPException(422, detail=f"source refused: {error}") from None


def _status(raw: dict[str, Any], camera_id: str | None = None) -> CameraStatus:
    data = dict(raw)
    data.setdefault("id", camera_id or data.get("config", {}).get("id", "?"))
    data.setdefault("config", {k: v for k, v in raw.items() if k in CameraConfig.model_fields})
    data.setdefault("push_mode", data["config"].get("push_mode", "always"))
    output = (data.get("stats") or {}).get("output") or {}
    if "pushing" in output:
        data.setdefault("pushing", bool(output["pushing"]))
    return CameraStatus.model_validate(data)


def _current_config(raw: dict[str, Any]) -> dict[str, Any]:
    config = raw.get("config")
    if isinstance(config, dict) and config:
        return dict(config)
    return {k: v for k, v in raw.items() if k in CameraConfig.model_fields}


def _validated(data: dict[str, Any]) -> CameraConfig:
    try:
        return CameraConfig.model_validate(data)
    except ValidationError as error:
        problems = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors()]
        raise HTTPException(422, detail=problems) from None


async def _ensure_camera(ctx: ApiContext, camera_id: str) -> None:
    await ctx.control.get_camera(camera_id)


def _viewer(request: Request, kind: str) -> str:
    client = request.client.host if request.client is not None else "?"
    return f"{kind}:{client}"


def build_router(read: Any, write: Any) -> APIRouter:
    router = APIRouter(tags=["cameras"], responses=ERRORS)
    touches = ViewerTouches()

    @router.get("/cameras", response_model=list[CameraStatus], summary="List cameras", dependencies=[Depends(read)])
    async def list_cameras(ctx: ApiContext = Depends(get_context)) -> list[CameraStatus]:
        return [_status(raw) for raw in await ctx.control.list_cameras()]

    @router.get("/cameras/{camera_id}", response_model=CameraStatus, summary="One camera", dependencies=[Depends(read)])
    async def get_camera(camera_id: str = _camera_id(), ctx: ApiContext = Depends(get_context)) -> CameraStatus:
        return _status(await ctx.control.get_camera(camera_id), camera_id)

    @router.post(
        "/cameras",
        response_model=CameraStatus,
        status_code=201,
        summary="Add a camera",
        description="Starts its decoder, annotator and pusher. The source must use an allowed scheme "
        "(rtsp, rtmp, http(s), srt) or be a file inside the configured file source directory.",
        responses={409: {"model": Problem, "description": "A camera with this id exists."}},
        dependencies=[Depends(write)],
    )
    async def add_camera(camera: CameraConfig, ctx: ApiContext = Depends(get_context)) -> CameraStatus:
        check_source(ctx, camera)
        added = await ctx.control.add_camera(camera.model_dump(mode="json"))
        logger.info("camera added camera_id=%s site=%s", camera.id, camera.site)
        return _status(added or {"config": camera.model_dump(mode="json")}, camera.id)

    @router.put(
        "/cameras/{camera_id}",
        response_model=CameraStatus,
        summary="Replace a camera's configuration",
        description="The body is the whole camera configuration; its id must be the path's.",
        dependencies=[Depends(write)],
    )
    async def put_camera(
        camera: CameraConfig, camera_id: str = _camera_id(), ctx: ApiContext = Depends(get_context)
    ) -> CameraStatus:
        if camera.id != camera_id:
            raise HTTPException(422, detail=f"body id '{camera.id}' differs from path id '{camera_id}'")
        check_source(ctx, camera)
        updated = await ctx.control.update_camera(camera_id, camera.model_dump(mode="json"))
        logger.info("camera replaced camera_id=%s", camera_id)
        return _status(updated or {"config": camera.model_dump(mode="json")}, camera_id)

    @router.patch(
        "/cameras/{camera_id}",
        response_model=CameraStatus,
        summary="Change some of a camera's settings",
        description="The body holds only the fields to change; the merged configuration is validated as a whole.",
        dependencies=[Depends(write)],
    )
    async def patch_camera(
        changes: dict[str, Any] = Body(examples=[PATCH_EXAMPLE]),
        camera_id: str = _camera_id(),
        ctx: ApiContext = Depends(get_context),
    ) -> CameraStatus:
        if "id" in changes and changes["id"] != camera_id:
            raise HTTPException(422, detail="a camera's id cannot be changed; add a new camera instead")
        current = _current_config(await ctx.control.get_camera(camera_id))
        merged = _validated({**current, **changes, "id": camera_id})
        if "source" in changes:
            check_source(ctx, merged)
        updated = await ctx.control.update_camera(camera_id, merged.model_dump(mode="json"))
        logger.info("camera changed camera_id=%s fields=%s", camera_id, ",".join(sorted(changes)))
        return _status(updated or {"config": merged.model_dump(mode="json")}, camera_id)

    @router.delete("/cameras/{camera_id}", status_code=204, summary="Remove a camera", dependencies=[Depends(write)])
    async def delete_camera(camera_id: str = _camera_id(), ctx: ApiContext = Depends(get_context)) -> Response:
        await ctx.control.remove_camera(camera_id)
        logger.info("camera removed camera_id=%s", camera_id)
        return Response(status_code=204)

    @router.get(
        "/cameras/{camera_id}/frame.jpg",
        summary="Latest annotated frame",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}, 503: {"model": Problem, "description": "No frame yet."}},
        dependencies=[Depends(read)],
    )
    async def frame_jpg(camera_id: str = _camera_id(), ctx: ApiContext = Depends(get_context)) -> Response:
        jpeg = await ctx.control.latest_jpeg(camera_id)
        if not jpeg:
            await _ensure_camera(ctx, camera_id)
            raise HTTPException(
                503, detail=f"camera '{camera_id}' has no annotated frame yet", headers={"Retry-After": "1"}
            )
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @router.get(
        "/cameras/{camera_id}/live.mjpg",
        summary="Live annotated view (MJPEG)",
        description="multipart/x-mixed-replace stream of the latest annotated frames at about ApiConfig.live_fps; "
        "plays in a plain <img> tag and ends when the client leaves.",
        response_class=StreamingResponse,
        responses={200: {"content": {f"multipart/x-mixed-replace; boundary={BOUNDARY}": {}}}},
        dependencies=[Depends(read)],
    )
    async def live_mjpg(request: Request, camera_id: str = _camera_id(), ctx: ApiContext = Depends(get_context)) -> Any:
        # The first picture doubles as the check that the camera exists (CameraNotFound: 404) and, for an
        # on-demand camera, as the viewer's request: fetched before the headers, it costs no extra call.
        first = await ctx.control.latest_jpeg(camera_id)
        return StreamingResponse(
            _mjpeg(ctx, camera_id, first),
            media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @router.get(
        "/cameras/{camera_id}/stream",
        response_model=StreamUrls,
        summary="Where to watch the annotated stream",
        dependencies=[Depends(read)],
    )
    async def stream(
        request: Request, camera_id: str = _camera_id(), ctx: ApiContext = Depends(get_context)
    ) -> StreamUrls:
        pushed = dict(await ctx.control.stream_urls(camera_id))
        base = str(request.base_url).rstrip("/")
        local_hls = pushed.pop("hls", None)  # a path on the pusher's node: this API serves it instead
        hls_index = ctx.hls_dir / camera_id / "index.m3u8"
        hls = f"{base}/hls/{camera_id}/index.m3u8" if (local_hls or hls_index.is_file()) else None
        return StreamUrls(
            camera_id=camera_id,
            live_mjpeg=f"{base}/cameras/{camera_id}/live.mjpg",
            frame_jpeg=f"{base}/cameras/{camera_id}/frame.jpg",
            hls=hls,
            pushed=pushed,
        )

    @router.post(
        "/cameras/{camera_id}/watch",
        response_model=WatchStatus,
        summary="Ask for a camera's stream (streams on demand)",
        description="Counts as a viewer: a camera with push_mode 'on_demand' encodes from its next frame "
        "until PusherConfig.on_demand_idle_s pass without a viewer. The HLS playlist, MJPEG and JPEG "
        "views count on their own; call this to start the HLS stream before the player asks, or to keep "
        "a stream pushed to RTMP/RTSP/SRT going.",
        responses={409: {"model": Problem, "description": "The camera is not running (disabled or starting)."}},
        dependencies=[Depends(read)],
    )
    async def watch(
        request: Request, camera_id: str = _camera_id(), ctx: ApiContext = Depends(get_context)
    ) -> WatchStatus:
        status = await touches.touch(ctx.control, camera_id, _viewer(request, "watch"), force=True)
        if status is None:
            await _ensure_camera(ctx, camera_id)
            raise HTTPException(409, detail=f"camera '{camera_id}' has no running pusher (disabled or starting)")
        return WatchStatus(camera_id=camera_id, **{k: status[k] for k in WatchStatus.model_fields if k in status})

    @router.get(
        "/hls/{camera_id}/{file}",
        summary="HLS playlist and segments",
        description="Serves PusherConfig.hls_dir/<camera_id>/<file>: index.m3u8 and its .ts segments. "
        "A playlist GET counts as a viewer; for a camera with push_mode 'on_demand' that is not encoding, "
        "it starts the encoder and waits for the first segment (about hls_segment_s plus a second).",
        response_class=FileResponse,
        responses={200: {"content": {"application/vnd.apple.mpegurl": {}, "video/mp2t": {}}}},
        dependencies=[Depends(read)],
    )
    async def hls(
        request: Request,
        camera_id: str = _camera_id(),
        file: str = PathParam(max_length=140),
        ctx: ApiContext = Depends(get_context),
    ) -> FileResponse:
        if not HLS_FILE.match(file):
            raise HTTPException(404, detail="no such HLS file (expected index.m3u8 or a segment name)")
        root = ctx.hls_dir.resolve()
        path = (root / camera_id / file).resolve()
        if not path.is_relative_to(root):
            raise HTTPException(404, detail=f"no HLS file '{file}' for camera '{camera_id}'")
        kind = file.rsplit(".", 1)[1]
        if kind == "m3u8":
            await _hls_viewer(request, ctx, camera_id, path)
        if not path.is_file():
            raise HTTPException(404, detail=f"no HLS file '{file}' for camera '{camera_id}'")
        cache = "no-cache" if kind == "m3u8" else "max-age=60"
        return FileResponse(path, media_type=HLS_TYPES[kind], headers={"Cache-Control": cache})

    async def _hls_viewer(request: Request, ctx: ApiContext, camera_id: str, path: Any) -> None:
        """Touch the camera's pusher; a starting on-demand stream's playlist is waited for (bounded)."""
        try:
            status = await touches.touch(ctx.control, camera_id, _viewer(request, "hls"))
        except CameraNotFound:
            if path.is_file():  # files of a removed camera stay served until they are gone
                return
            raise
        except ControlError:  # the controller is down: files on disk are still served
            return
        if status is None or status.get("push_mode") != "on_demand" or status.get("hls_ready"):
            return
        # Starting (or just stopped, its playlist not yet removed): wait until the pusher says that the
        # playlist on disk is its new encoder's, so a viewer never gets a stale one.
        pusher = ctx.pusher
        deadline = time.monotonic() + pusher.hls_segment_s + pusher.gop_s + HLS_START_GRACE_S
        while time.monotonic() < deadline:
            await asyncio.sleep(HLS_POLL_S)
            status = await touches.touch(ctx.control, camera_id, _viewer(request, "hls"), force=True)
            if status is None or status.get("hls_ready"):
                return
        raise HTTPException(503, detail=f"the stream of camera '{camera_id}' is starting", headers={"Retry-After": "1"})

    return router


async def _mjpeg(ctx: ApiContext, camera_id: str, first: bytes | None = None) -> AsyncIterator[bytes]:
    """Yield multipart parts until the camera goes or ApiConfig.live_max_s passes; unchanged pictures
    are not sent again (but for a keep-alive), so a stalled camera costs no bandwidth.

    A client that leaves ends it too: the server (uvicorn, Serve's proxy) cancels the response, which
    closes this generator. ``request.is_disconnected()`` is not used: behind an HTTP middleware it
    reports a disconnect as soon as the headers are out.
    """
    period = 1.0 / ctx.config.live_fps
    started = time.monotonic()
    sent = 0
    last: bytes | None = None
    last_sent = 0.0
    ctx.metrics.live_views += 1
    try:
        while time.monotonic() - started < ctx.config.live_max_s:
            tick = time.monotonic()
            try:
                jpeg = first if sent == 0 and first is not None else await ctx.control.latest_jpeg(camera_id)
            except CameraNotFound:
                break
            fresh = jpeg is not None and jpeg != last
            if jpeg and (fresh or time.monotonic() - last_sent > KEEPALIVE_S):
                last, last_sent = jpeg, time.monotonic()
                header = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                yield header.encode("ascii") + jpeg + b"\r\n"
                sent += 1
            await asyncio.sleep(max(0.0, period - (time.monotonic() - tick)))
    finally:
        ctx.metrics.live_views -= 1
        logger.info("live view ended camera_id=%s frames=%d seconds=%.1f", camera_id, sent, time.monotonic() - started)
