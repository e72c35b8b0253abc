"""Letterboxing exactly like Ultralytics' ``LetterBox``, batched, with the geometry kept per frame.

The geometry math is in small pure functions (``letterbox_geometry``, ``canvas_shape``,
``boxes_to_frame``, ``boxes_to_input``) so the GPU path computes the same numbers as this CPU path
and as Ultralytics: same scale, same rounding of the resized size, same split of the padding.

Rectangular inputs are the main speed lever: a dynamic-shape 640 model fed a 1280x720 frame gets a
384x640 input instead of 640x640 (40% fewer pixels), exactly as Ultralytics' ``auto`` mode does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True, slots=True)
class LetterboxGeometry:
    """Where a frame sits inside the network input.

    ``ratio`` is (width, height) scale from frame to input; ``resized`` (width, height) is the
    frame's size after scaling; ``pad`` (left, top) is where its top-left corner lands; ``input_shape``
    (height, width) is the whole padded canvas; ``frame_shape`` (height, width) the original frame.
    """

    frame_shape: tuple[int, int]
    input_shape: tuple[int, int]
    ratio: tuple[float, float]
    resized: tuple[int, int]
    pad: tuple[int, int]

    @property
    def content_box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the frame's pixels inside the input."""
        left, top = self.pad
        return left, top, left + self.resized[0], top + self.resized[1]


def scale_ratio(frame_shape: tuple[int, int], target: tuple[int, int], scaleup: bool = True) -> float:
    """Ultralytics' letterbox gain: the largest scale fitting the frame into ``target`` (h, w)."""
    ratio = min(target[0] / frame_shape[0], target[1] / frame_shape[1])
    return ratio if scaleup else min(ratio, 1.0)


def resized_size(frame_shape: tuple[int, int], ratio: float) -> tuple[int, int]:
    """(width, height) of the scaled frame, rounded as Ultralytics rounds (at least 1 px)."""
    return max(round(frame_shape[1] * ratio), 1), max(round(frame_shape[0] * ratio), 1)


def auto_shape(frame_shape: tuple[int, int], target: tuple[int, int], stride: int) -> tuple[int, int]:
    """The rectangular (``auto``) input (h, w): the scaled frame padded up to the next stride multiple."""
    width, height = resized_size(frame_shape, scale_ratio(frame_shape, target))
    return (
        height + (target[0] - height) % stride,
        width + (target[1] - width) % stride,
    )


def letterbox_geometry(
    frame_shape: tuple[int, int],
    target: tuple[int, int],
    canvas: tuple[int, int] | None = None,
    scaleup: bool = True,
) -> LetterboxGeometry:
    """Scale the frame to fit ``target`` (h, w) and centre it in ``canvas`` (h, w; default ``target``).

    With ``canvas = target`` this is Ultralytics' square letterbox, with ``canvas = auto_shape(...)``
    its rectangular ``auto`` mode; a larger canvas is how frames of different sizes share one batch.
    """
    height, width = int(frame_shape[0]), int(frame_shape[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"frame shape must be positive, got {frame_shape}")
    canvas = canvas or target
    ratio = scale_ratio((height, width), target, scaleup)
    new_w, new_h = resized_size((height, width), ratio)
    dw, dh = (canvas[1] - new_w) / 2, (canvas[0] - new_h) / 2
    if dw < 0 or dh < 0:
        raise ValueError(f"canvas {canvas} is smaller than the resized frame {(new_h, new_w)}")
    left, top = round(dw - 0.1), round(dh - 0.1)
    return LetterboxGeometry(
        frame_shape=(height, width),
        input_shape=(int(canvas[0]), int(canvas[1])),
        ratio=(new_w / width, new_h / height),
        resized=(new_w, new_h),
        pad=(left, top),
    )


def batch_geometry(
    frame_shapes: Sequence[tuple[int, int]],
    target: tuple[int, int],
    stride: int,
    rectangular: bool,
) -> list[LetterboxGeometry]:
    """Geometry for a batch: one common canvas, each frame centred in it.

    Rectangular: the canvas is the element-wise largest ``auto`` shape of the frames (for frames of
    one size, exactly Ultralytics' ``auto`` input). Otherwise the canvas is ``target``.
    """
    if not frame_shapes:
        return []
    if rectangular:
        shapes = [auto_shape(shape, target, stride) for shape in frame_shapes]
        canvas = (max(s[0] for s in shapes), max(s[1] for s in shapes))
    else:
        canvas = target
    return [letterbox_geometry(shape, target, canvas) for shape in frame_shapes]


def boxes_to_frame(boxes: np.ndarray, geometry: LetterboxGeometry, clip: bool = True) -> np.ndarray:
    """Input-space xyxy boxes to frame pixels (Ultralytics ``scale_boxes``), clipped to the frame."""
    out = np.array(boxes, dtype=np.float32, copy=True).reshape(-1, 4)
    left, top = geometry.pad
    out[:, [0, 2]] = (out[:, [0, 2]] - left) / geometry.ratio[0]
    out[:, [1, 3]] = (out[:, [1, 3]] - top) / geometry.ratio[1]
    if clip:
        height, width = geometry.frame_shape
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


def boxes_to_input(boxes: np.ndarray, geometry: LetterboxGeometry) -> np.ndarray:
    """Frame xyxy boxes to input space: the inverse of ``boxes_to_frame`` (without clipping)."""
    out = np.array(boxes, dtype=np.float64, copy=True).reshape(-1, 4)
    left, top = geometry.pad
    out[:, [0, 2]] = out[:, [0, 2]] * geometry.ratio[0] + left
    out[:, [1, 3]] = out[:, [1, 3]] * geometry.ratio[1] + top
    return out


def letterbox(image: np.ndarray, geometry: LetterboxGeometry) -> np.ndarray:
    """The padded uint8 BGR input picture (H, W, 3) for one frame."""
    canvas_h, canvas_w = geometry.input_shape
    new_w, new_h = geometry.resized
    if image.shape[1] != new_w or image.shape[0] != new_h:
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    out = np.empty((canvas_h, canvas_w, 3), dtype=np.uint8)
    left, top = geometry.pad
    # Fill only the borders: the frame covers most of the canvas.
    out[:top] = PAD_VALUE
    out[top + new_h :] = PAD_VALUE
    out[top : top + new_h, :left] = PAD_VALUE
    out[top : top + new_h, left + new_w :] = PAD_VALUE
    out[top : top + new_h, left : left + new_w] = image
    return out


def check_image(image: object, index: int = 0) -> np.ndarray:
    """Refuse anything that is not an H x W x 3 uint8 picture, saying which one and why."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image {index} is a {type(image).__name__}, expected a numpy array")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image {index} has shape {image.shape}, expected (height, width, 3) BGR")
    if image.dtype != np.uint8:
        raise ValueError(f"image {index} has dtype {image.dtype}, expected uint8")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image {index} is empty ({image.shape})")
    return image


def preprocess(
    images: Sequence[np.ndarray],
    target: tuple[int, int],
    stride: int = 32,
    rectangular: bool = True,
) -> tuple[np.ndarray, list[LetterboxGeometry]]:
    """BGR uint8 frames to one float32 NCHW RGB batch in [0, 1], plus each frame's geometry."""
    frames = [check_image(image, i) for i, image in enumerate(images)]
    geometries = batch_geometry([f.shape[:2] for f in frames], target, stride, rectangular)
    if not frames:
        return np.zeros((0, 3, *target), np.float32), []
    boxed = [letterbox(frame, geom) for frame, geom in zip(frames, geometries, strict=True)]
    # blobFromImages does BGR->RGB, /255 and HWC->CHW in one native pass.
    batch = cv2.dnn.blobFromImages(boxed, scalefactor=1.0 / 255.0, swapRB=True, crop=False, ddepth=cv2.CV_32F)
    return np.ascontiguousarray(batch, dtype=np.float32), geometries
