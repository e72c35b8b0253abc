"""On-demand inference: upload an image, get instances as JSON or the annotated JPEG."""

from __future__ import annotations

import logging
from typing import Any, Literal

import cv2
import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from starlette.datastructures import UploadFile
from trtseg.detections import Detections
from trtseg.imageinfo import image_size

from deployments.context import ApiContext, get_context
from deployments.models import InferenceResult, Problem

logger = logging.getLogger(__name__)

MAX_PIXELS = 50_000_000  # decoded size bound: a small compressed file may expand to a huge bitmap


async def _read_body(request: Request, limit: int) -> bytes:
    """Raw body or the first file part of a multipart form, refusing anything over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise HTTPException(413, detail=f"image over {limit} bytes")
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=1, max_fields=8, max_part_size=limit + 1)
        except HTTPException:
            raise
        except Exception as error:
            raise HTTPException(400, detail=f"malformed multipart body: {error}") from None
        files = [v for v in form.values() if isinstance(v, UploadFile)]
        if not files:
            raise HTTPException(422, detail="multipart body has no file part (send the image as field 'file')")
        data = await files[0].read(limit + 1)
    else:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, detail=f"image over {limit} bytes")
            chunks.append(chunk)
        data = b"".join(chunks)
    if len(data) > limit:
        raise HTTPException(413, detail=f"image over {limit} bytes")
    if not data:
        raise HTTPException(422, detail="empty body: send a JPEG/PNG/BMP/WebP image")
    return data


def decode_image(data: bytes) -> np.ndarray:
    """BGR image from encoded bytes; 415 when it is not an image OpenCV can read.

    The declared size is checked from the header first: a small compressed file can declare
    billions of pixels, and decoding it before refusing would spend the memory anyway.
    """
    declared = image_size(data)
    if declared is None:
        raise HTTPException(415, detail="the body is not a decodable image (JPEG, PNG, BMP, WebP)")
    if declared[0] * declared[1] > MAX_PIXELS:
        raise HTTPException(413, detail=f"image declares {declared[0]}x{declared[1]} pixels, more than {MAX_PIXELS}")
    array = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(array, cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise HTTPException(415, detail="the body is not a decodable image (JPEG, PNG, BMP, WebP)")
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise HTTPException(413, detail="image has too many pixels")
    return image


def _annotated_jpeg(ctx: ApiContext, image: np.ndarray, detections: Detections) -> bytes:
    from trtseg.annotate import draw

    scene = draw(image.copy(), detections, ctx.pusher, title="trtseg /infer")
    ok, encoded = cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, ctx.pusher.jpeg_quality])
    if not ok:
        raise HTTPException(500, detail="could not encode the annotated image")
    return encoded.tobytes()


def build_router(guard: Any) -> APIRouter:
    """``guard``: the write dependency, since inference spends the shared accelerator."""
    router = APIRouter(tags=["inference"])

    @router.post(
        "/infer",
        summary="Segment an uploaded image",
        description="Send the image as the raw body (Content-Type image/jpeg, image/png, ...) or as a "
        "multipart form file. Limit: ApiConfig.max_upload_mb. `format=json` answers the instances "
        "(boxes, classes, scores, polygons); `format=jpeg` the annotated image.",
        response_model=InferenceResult,
        responses={
            200: {"content": {"image/jpeg": {}}},
            413: {"model": Problem, "description": "Image too large."},
            415: {"model": Problem, "description": "Not a decodable image."},
            503: {"model": Problem, "description": "No segmentation engine available."},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                    "multipart/form-data": {
                        "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
                    },
                },
            }
        },
        dependencies=[Depends(guard)],
    )
    async def infer(
        request: Request,
        format: Literal["json", "jpeg"] = Query("json", description="Answer as JSON instances or annotated JPEG."),
        conf: float = Query(0.25, ge=0.0, le=1.0, description="Confidence threshold."),
        classes: str | None = Query(
            None, max_length=1024, description="Comma-separated class names to keep.", examples=["charging_cable"]
        ),
        polygons: bool = Query(True, description="Include mask polygons in the JSON."),
        ctx: ApiContext = Depends(get_context),
    ) -> Any:
        limit = int(ctx.config.max_upload_mb * 1024 * 1024)
        image = decode_image(await _read_body(request, limit))
        detections = await ctx.control.infer_image(image, conf)
        if classes:
            wanted = [name.strip() for name in classes.split(",") if name.strip()]
            detections = detections.of_classes(wanted)
        logger.info("infer width=%d height=%d instances=%d", image.shape[1], image.shape[0], len(detections))
        if format == "jpeg":
            return Response(_annotated_jpeg(ctx, image, detections), media_type="image/jpeg")
        records = detections.to_records(with_polygons=polygons)
        return InferenceResult(width=image.shape[1], height=image.shape[0], count=len(records), instances=records)

    return router
