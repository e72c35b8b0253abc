"""YOLOv8-seg post-processing on the GPU, down to per-frame ``Detections``.

Confidence filter and class-aware NMS run on the whole batch at once; masks are computed only for
the detections kept, only inside their boxes, at the frame's resolution: mask logits at prototype
resolution (coefficients x prototypes), then one bilinear sample per frame pixel through the same
chain of coordinate maps the CPU path applies (prototype -> network input -> frame), thresholded.
Only boxes, scores, classes and the box-sized mask crops come back to the host, and the crops stay
crops: each frame's ``InstanceMasks`` are views of one host copy of the batch's crop buffer.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.base import EngineError
from engines.gpu.memory import GpuContext, to_cupy
from engines.gpu.nms import batched_nms
from engines.postprocess import MAX_WH, nms
from engines.preprocess import LetterboxGeometry, boxes_to_frame
from trtseg.detections import Detections
from trtseg.masks import InstanceMasks

logger = logging.getLogger(__name__)

MAX_NMS = 30000  # Ultralytics' cap on candidates per image entering NMS

_MASK_KERNELS = r"""
// Mask logits at prototype resolution for each kept detection: coeffs . protos[img] (nm, P), the
// coefficients read straight from the predictions (B, channels, anchors) at the detection's anchor.
extern "C" __global__ void mask_logits(const float* __restrict__ pred, const int channels, const int anchors,
                                       const int coeff_start, const long long* __restrict__ image_of,
                                       const long long* __restrict__ anchor_of, const float* __restrict__ protos,
                                       float* __restrict__ out, int k_count, int nm, int p_count) {
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    const int k = blockIdx.y;
    if (p >= p_count || k >= k_count) return;
    const float* c = pred + ((long long)image_of[k] * channels + coeff_start) * anchors + anchor_of[k];
    const float* pr = protos + image_of[k] * (long long)nm * p_count + p;
    float acc = 0.f;
    for (int m = 0; m < nm; ++m) acc += c[(long long)m * anchors] * pr[(long long)m * p_count];
    out[(long long)k * p_count + p] = acc;
}

// Bilinear taps as cv2.INTER_LINEAR (and PyTorch align_corners=False) take them: half-pixel centres,
// edges clamped. Returns the two source indices and the weight of the second.
__device__ __forceinline__ void taps(int i, int out_size, int in_size, int* low, int* high, float* w) {
    const float scale = (float)in_size / (float)out_size;
    float src = scale * ((float)i + 0.5f) - 0.5f;
    src = fmaxf(src, 0.f);
    int lo = min((int)floorf(src), in_size - 1);
    *low = lo;
    *high = min(lo + 1, in_size - 1);
    *w = fminf(fmaxf(src - (float)lo, 0.f), 1.f);
}

// Binary mask value of network-input pixel (r, c): logits upsampled from prototype resolution,
// thresholded, and zero outside the input-space box window [c0, c1) x [r0, r1).
__device__ __forceinline__ float binary_at(const float* lg, int r, int c, int c0, int c1, int r0, int r1, int mh,
                                           int mw, int in_h, int in_w, float threshold, int* any) {
    if (c < c0 || c >= c1 || r < r0 || r >= r1) return 0.f;
    int yl, yh, xl, xh;
    float wy, wx;
    taps(r, in_h, mh, &yl, &yh, &wy);
    taps(c, in_w, mw, &xl, &xh, &wx);
    const float a = lg[yl * mw + xl] * (1.f - wy) + lg[yh * mw + xl] * wy;
    const float b = lg[yl * mw + xh] * (1.f - wy) + lg[yh * mw + xh] * wy;
    const float v = a * (1.f - wx) + b * wx;
    if (v > threshold) { *any = 1; return 1.f; }
    return 0.f;
}

// One detection per blockIdx.y: its frame-pixel crop, resampled from the binary input-space mask as
// the CPU path does (bilinear from the content region of the input to the frame, > 0.5).
// geo (K, 14) int32: crop x0, y0, w, h (frame px); window c0, c1, r0, r1 (input px); pad left, top;
// content w, h (input px); frame w, h.
extern "C" __global__ void mask_crops(const float* __restrict__ logits, const int* __restrict__ geo,
                                      const long long* __restrict__ out_offset, unsigned char* __restrict__ out,
                                      int* __restrict__ nonempty, int mh, int mw, int in_h, int in_w,
                                      float threshold) {
    const int k = blockIdx.y;
    const int* g = geo + k * 14;
    const int fx0 = g[0], fy0 = g[1], cw = g[2], ch = g[3];
    const int c0 = g[4], c1 = g[5], r0 = g[6], r1 = g[7];
    const int left = g[8], top = g[9], content_w = g[10], content_h = g[11], frame_w = g[12], frame_h = g[13];
    const float* lg = logits + (long long)k * mh * mw;
    unsigned char* dst = out + out_offset[k];
    const int total = cw * ch;
    int any = 0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        const int x = fx0 + i % cw, y = fy0 + i / cw;
        int yl, yh, xl, xh;
        float wy, wx;
        taps(y, frame_h, content_h, &yl, &yh, &wy);
        taps(x, frame_w, content_w, &xl, &xh, &wx);
        yl += top; yh += top; xl += left; xh += left;
        const float b00 = binary_at(lg, yl, xl, c0, c1, r0, r1, mh, mw, in_h, in_w, threshold, &any);
        const float b10 = binary_at(lg, yh, xl, c0, c1, r0, r1, mh, mw, in_h, in_w, threshold, &any);
        const float b01 = binary_at(lg, yl, xh, c0, c1, r0, r1, mh, mw, in_h, in_w, threshold, &any);
        const float b11 = binary_at(lg, yh, xh, c0, c1, r0, r1, mh, mw, in_h, in_w, threshold, &any);
        const float col0 = b00 * (1.f - wy) + b10 * wy;
        const float col1 = b01 * (1.f - wy) + b11 * wy;
        const float v = col0 * (1.f - wx) + col1 * wx;
        dst[i] = v > 0.5f ? 1 : 0;
    }
    if (any) atomicOr(nonempty + k, 1);
}
"""


def linear_taps(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps (half-pixel centres, edges clamped, as cv2.INTER_LINEAR): low, high, weight.

    The host twin of the kernels' ``taps``: used to find which frame pixels a box's mask reaches.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.maximum(scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), 0)
    low = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    return low, high, np.clip(src - low, 0.0, 1.0).astype(np.float32)


def frame_masks(
    crops: np.ndarray,
    geo: np.ndarray,
    offsets: np.ndarray,
    image: np.ndarray,
    geometries: Sequence[LetterboxGeometry],
) -> list[InstanceMasks]:
    """Each frame's ``InstanceMasks`` as views of the batch's crop buffer (no copy, no full frames).

    ``crops`` is the flat 0/1 buffer the crop kernel wrote, owned by the caller from here on (not a
    reused pinned buffer); row k of ``geo`` starts with crop k's x0, y0, w, h, which lies at
    ``offsets[k]`` in ``crops``; ``image[k]`` is its frame in the batch.
    """
    data = crops.view(bool)
    return [
        InstanceMasks.from_buffer(geom.frame_shape, geo[rows, :4], offsets[rows], data)
        for geom, rows in zip(geometries, frame_rows(image, len(geometries)), strict=True)
    ]


def frame_rows(image: np.ndarray, frames: int) -> list[slice] | list[np.ndarray]:
    """Each frame's rows: slices when rows are grouped by frame (as the selection leaves them; no
    per-frame scans or copies for a 32-frame batch), index arrays otherwise."""
    if image.size < 2 or not bool((np.diff(image) < 0).any()):
        bounds = np.searchsorted(image, np.arange(frames + 1)).tolist()
        return [slice(bounds[i], bounds[i + 1]) for i in range(frames)]
    return [np.flatnonzero(image == i) for i in range(frames)]


_SELECT_KERNEL = r"""
// Confidence filter for the whole batch in one pass: per anchor its best class (first on ties, as
// argmax), dropped unless above conf, allowed, and with a finite box; survivors are appended to
// rows (image, anchor, class, score, x1, y1, x2, y2 in input pixels) through an atomic counter.
// Rows past cap are counted but not written, so the host knows when to take the general path.
extern "C" __global__ void select_candidates(const float* __restrict__ pred, const int batch, const int channels,
                                             const int anchors, const int nc, const float conf,
                                             const unsigned char* __restrict__ allowed, const int cap,
                                             float* __restrict__ rows, int* __restrict__ count) {
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long long)batch * anchors) return;
    const int b = (int)(t / anchors), a = (int)(t % anchors);
    const float* p = pred + (long long)b * channels * anchors + a;
    float best = p[4LL * anchors];
    int cls = 0;
    for (int c = 1; c < nc; ++c) {
        const float v = p[(long long)(4 + c) * anchors];
        if (v > best) { best = v; cls = c; }
    }
    if (!(best > conf) || !allowed[cls]) return;
    const float cx = p[0], cy = p[(long long)anchors];
    const float hw = p[2LL * anchors] / 2.f, hh = p[3LL * anchors] / 2.f;
    if (!(isfinite(cx) && isfinite(cy) && isfinite(hw) && isfinite(hh))) return;
    const int i = atomicAdd(count, 1);
    if (i >= cap) return;
    float* r = rows + (long long)i * 8;
    r[0] = (float)b; r[1] = (float)a; r[2] = (float)cls; r[3] = best;
    r[4] = cx - hw; r[5] = cy - hh; r[6] = cx + hw; r[7] = cy + hh;
}
"""

SELECT_CAP = 1 << 16  # candidate rows the selection kernel holds; more take the general path
PREFETCH_ROWS = 1024  # rows downloaded with the count in the same copy (one sync for most frames)
HOST_NMS_MAX = 1024  # up to this many candidates NMS runs on the host (cheaper than GPU launches)


def kernel_source() -> str:
    return _MASK_KERNELS + _SELECT_KERNEL


@dataclass(slots=True)
class _Kept:
    """The detections kept after NMS and the per-frame cap, on the host."""

    image: np.ndarray  # (K,) frame index in the batch
    anchor: np.ndarray  # (K,) anchor index
    boxes_input: np.ndarray  # (K, 4) xyxy in network-input pixels
    scores: np.ndarray
    class_ids: np.ndarray

    def take(self, index: np.ndarray) -> _Kept:
        return _Kept(
            self.image[index], self.anchor[index], self.boxes_input[index], self.scores[index], self.class_ids[index]
        )


class GpuPostprocess:
    """Turns the network's two outputs (device arrays) into ``Detections`` per frame."""

    def __init__(
        self, context: GpuContext, names: dict[int, str], mask_threshold: float = 0.5, nms: str = "auto"
    ) -> None:
        if nms not in ("auto", "torchvision", "cupy"):
            raise EngineError(f"nms must be 'auto', 'torchvision' or 'cupy', got {nms!r}")
        self.ctx = context
        self.nms = nms
        self.names = dict(names)
        self.num_classes = len(self.names)
        self.logit_threshold = float(math.log(mask_threshold / (1.0 - mask_threshold)))
        self._taps_cache: dict[tuple[Any, ...], tuple[np.ndarray, ...]] = {}
        # Host milliseconds per sub-stage, summed over calls (for benchmarks and metrics).
        self.profile: dict[str, float] = {}
        self._last_mark = 0.0
        cp = context.cp
        with context.device:
            # No FMA contraction: the tap arithmetic must round exactly as the CPU path's float32 does.
            module = cp.RawModule(code=kernel_source(), options=("--std=c++17", "--fmad=false"))
            self._logits_kernel = module.get_function("mask_logits")
            self._crops_kernel = module.get_function("mask_crops")
            self._select_kernel = module.get_function("select_candidates")
        self._allowed_cache: dict[tuple[int, ...] | None, Any] = {}

    def run(
        self,
        output0: Any,
        output1: Any,
        geometries: Sequence[LetterboxGeometry],
        conf: float = 0.25,
        iou: float = 0.7,
        classes: Sequence[int] | None = None,
        with_masks: bool = True,
        max_det: int = 300,
        agnostic: bool = False,
    ) -> list[Detections]:
        """Detections for the first ``len(geometries)`` frames of the batch (padding slots ignored)."""
        count = len(geometries)
        if count == 0:
            return []
        with self.ctx.active():
            # Contiguous float32 once here: the selection and mask kernels index it directly.
            pred = self.ctx.cp.ascontiguousarray(to_cupy(output0)[:count], dtype=self.ctx.cp.float32)
            protos = to_cupy(output1)[:count]
            nc = self.num_classes
            if pred.ndim != 3 or pred.shape[1] < 4 + nc:
                raise EngineError(f"output0 shape {pred.shape} does not fit {nc} classes")
            self._mark(None)
            kept = self._select(pred, conf, iou, classes, max_det, agnostic)
            self._mark("select")
            frame_boxes = self._boxes_to_frames(kept, geometries)
            self._mark("boxes")
            masks: list[InstanceMasks | None] = [None] * count
            if with_masks:
                mask_list, nonempty = self._masks(pred, protos, kept, geometries)
                masks = list(mask_list)
                if not nonempty.all():  # as Ultralytics and the CPU path: drop instances with empty masks
                    rows = frame_rows(kept.image, count)
                    masks = [m[nonempty[rows[i]]] for i, m in enumerate(mask_list)]
                    kept, frame_boxes = kept.take(np.flatnonzero(nonempty)), frame_boxes[nonempty]
        results: list[Detections] = []
        for geom, sel, instance_masks in zip(geometries, frame_rows(kept.image, count), masks, strict=True):
            results.append(
                Detections(
                    boxes=frame_boxes[sel].astype(np.float32),
                    scores=kept.scores[sel].astype(np.float32),
                    class_ids=kept.class_ids[sel].astype(np.int32),
                    masks=instance_masks,
                    names=self.names,
                    frame_shape=geom.frame_shape,
                )
            )
        return results

    def _mark(self, stage: str | None) -> None:
        now = time.perf_counter()
        if stage is not None:
            self.profile[stage] = self.profile.get(stage, 0.0) + (now - self._last_mark) * 1e3
        self._last_mark = now

    def close(self) -> None:
        """Nothing to release (buffers belong to the context); kept for the engine's shutdown call."""

    def _select(
        self, pred: Any, conf: float, iou: float, classes: Sequence[int] | None, max_det: int, agnostic: bool
    ) -> _Kept:
        """Confidence filter in one kernel, then NMS on the host (few candidates) or the GPU (many).

        Launch and sync overheads dominate at small batches: the kernel replaces a dozen array
        operations and the candidates come back with their count in one copy.
        """
        cp = self.ctx.cp
        batch, channels, anchors = (int(v) for v in pred.shape)
        # One buffer: the count (int32 bits in element 0) in an 8-float header, then the rows.
        buffer = self.ctx.device_buffer("post.select", (8 + 8 * SELECT_CAP,), np.float32)
        counter = buffer[:1].view(cp.int32)
        counter.fill(0)
        threads = 256
        self._select_kernel(
            ((batch * anchors + threads - 1) // threads,),
            (threads,),
            (
                pred,
                np.int32(batch),
                np.int32(channels),
                np.int32(anchors),
                np.int32(self.num_classes),
                np.float32(conf),
                self._allowed(classes),
                np.int32(SELECT_CAP),
                buffer[8:],
                counter,
            ),
        )
        head = self.ctx.download(buffer[: 8 + 8 * PREFETCH_ROWS], "post.select")  # the one sync
        found = int(head[:1].view(np.int32)[0])
        if found > SELECT_CAP:
            return self._select_general(pred, conf, iou, classes, max_det, agnostic)
        if found <= PREFETCH_ROWS and found <= HOST_NMS_MAX:
            return self._host_nms(head[8 : 8 + 8 * found].reshape(found, 8).copy(), iou, max_det, agnostic)
        rows = buffer[8 : 8 + 8 * found].reshape(found, 8)
        if found <= HOST_NMS_MAX:
            return self._host_nms(self.ctx.download(rows, "post.rows").copy(), iou, max_det, agnostic)
        return self._device_nms(rows, iou, max_det, agnostic)

    def _allowed(self, classes: Sequence[int] | None) -> Any:
        """Per-class 0/1 flags on the device (all 1 without a class filter), cached per filter."""
        key = None if classes is None else tuple(sorted({int(c) for c in classes}))
        flags = self._allowed_cache.get(key)
        if flags is None:
            lookup = np.ones(self.num_classes, np.uint8) if key is None else np.zeros(self.num_classes, np.uint8)
            if key is not None:
                lookup[[c for c in key if 0 <= c < self.num_classes]] = 1
            flags = self.ctx.cp.asarray(lookup)
            if len(self._allowed_cache) > 32:
                self._allowed_cache.clear()
            self._allowed_cache[key] = flags
        return flags

    def _host_nms(self, rows: np.ndarray, iou: float, max_det: int, agnostic: bool) -> _Kept:
        """NMS per frame on the host, as the CPU path does it (same order, same float32 arithmetic)."""
        if rows.shape[0] == 0:
            return self._kept_from_rows(rows, max_det)
        rows = rows[np.lexsort((rows[:, 1], rows[:, 0]))]  # by frame, then anchor: the CPU path's order
        kept: list[np.ndarray] = []
        starts = np.flatnonzero(np.r_[True, rows[1:, 0] != rows[:-1, 0]]).tolist()
        for start, end in zip(starts, [*starts[1:], rows.shape[0]], strict=True):
            frame = rows[start:end]
            if frame.shape[0] > MAX_NMS:
                frame = frame[np.sort(np.argsort(-frame[:, 3], kind="stable")[:MAX_NMS])]
            boxes = frame[:, 4:8]
            if not agnostic:
                boxes = boxes + (frame[:, 2] * np.float32(MAX_WH))[:, None]
            kept.append(frame[nms(boxes, frame[:, 3], iou, max_keep=max_det)])
        return self._kept_from_rows(np.concatenate(kept), max_det)

    def _device_nms(self, rows: Any, iou: float, max_det: int, agnostic: bool) -> _Kept:
        """NMS on the GPU for many candidates (large batches)."""
        cp = self.ctx.cp
        if rows.shape[0] > MAX_NMS:  # a frame may exceed Ultralytics' cap: keep each frame's best
            order = cp.lexsort(cp.stack([-rows[:, 3], rows[:, 0]]))
            rows = rows[order]
            frames = cp.ascontiguousarray(rows[:, 0])
            starts = cp.searchsorted(frames, frames, side="left")
            rows = rows[(cp.arange(rows.shape[0]) - starts) < MAX_NMS]
        image = rows[:, 0].astype(cp.int64)
        groups = image if agnostic else image * self.num_classes + rows[:, 2].astype(cp.int64)
        keep = batched_nms(rows[:, 4:8], rows[:, 3], groups, iou, prefer_torch=self.nms != "cupy")
        return self._kept_from_rows(self.ctx.download(rows[keep], "post.packed").astype(np.float64), max_det)

    @staticmethod
    def _kept_from_rows(host: np.ndarray, max_det: int) -> _Kept:
        """Rows (image, anchor, class, score, box) in score order -> each frame's best ``max_det``."""
        # A stable sort by frame keeps the score order within each frame.
        host = host[np.argsort(host[:, 0], kind="stable")]
        image = host[:, 0].astype(np.int64)
        ranks = np.arange(image.size) - np.searchsorted(image, image, side="left")
        host = host[ranks < max_det]
        return _Kept(
            image=host[:, 0].astype(np.int64),
            anchor=host[:, 1].astype(np.int64),
            boxes_input=host[:, 4:8].astype(np.float32),
            scores=host[:, 3].astype(np.float32),
            class_ids=host[:, 2].astype(np.int64),
        )

    def _select_general(
        self, pred: Any, conf: float, iou: float, classes: Sequence[int] | None, max_det: int, agnostic: bool
    ) -> _Kept:
        """Array-operation selection for any number of candidates (the kernel's overflow path)."""
        cp = self.ctx.cp
        nc = self.num_classes
        cls_scores = pred[:, 4 : 4 + nc, :]
        best = cls_scores.max(axis=1).astype(cp.float32)  # (B, A)
        best_cls = cls_scores.argmax(axis=1)
        # Ultralytics picks each anchor's best class first, then drops the unwanted ones.
        candidate = (best > np.float32(conf)) & (self._allowed(classes)[best_cls] != 0)
        image_idx, anchor_idx = cp.nonzero(candidate)
        if image_idx.size == 0:
            return self._kept_from_rows(np.zeros((0, 8), np.float32), max_det)
        xywh = pred[image_idx, :4, anchor_idx].astype(cp.float32)  # (K, 4)
        half = xywh[:, 2:] / 2
        # The kernel's row layout: image, anchor, class, score, x1, y1, x2, y2.
        rows = cp.concatenate(
            [
                cp.stack([image_idx, anchor_idx, best_cls[image_idx, anchor_idx]], axis=1).astype(cp.float32),
                best[image_idx, anchor_idx][:, None],
                xywh[:, :2] - half,
                xywh[:, :2] + half,
            ],
            axis=1,
        )
        return self._device_nms(rows, iou, max_det, agnostic)

    @staticmethod
    def _geometry_groups(
        image: np.ndarray, geometries: Sequence[LetterboxGeometry]
    ) -> list[tuple[LetterboxGeometry, np.ndarray]]:
        """Kept rows grouped by their frame's geometry (a batch of same-size frames is one group)."""
        frames_of: dict[LetterboxGeometry, list[int]] = {}
        for i, geom in enumerate(geometries):
            frames_of.setdefault(geom, []).append(i)
        groups = []
        for geom, frames in frames_of.items():
            rows = np.flatnonzero(np.isin(image, frames))
            if rows.size:
                groups.append((geom, rows))
        return groups

    def _boxes_to_frames(self, kept: _Kept, geometries: Sequence[LetterboxGeometry]) -> np.ndarray:
        out = np.zeros((kept.image.size, 4), np.float32)
        for geom, rows in self._geometry_groups(kept.image, geometries):
            out[rows] = boxes_to_frame(kept.boxes_input[rows], geom)
        return out

    def _to_device(self, array: np.ndarray, key: str) -> Any:
        """Asynchronous upload of a small host array through a pinned buffer (no implicit sync)."""
        array = np.ascontiguousarray(array)
        host = self.ctx.pinned(f"post.{key}", array.nbytes).view(array.dtype).reshape(array.shape)
        host[...] = array
        device = self.ctx.device_buffer(f"post.{key}", array.shape, array.dtype)
        self.ctx.upload(host.reshape(-1).view(np.uint8), device)
        return device

    def _masks(
        self,
        pred: Any,
        protos: Any,
        kept: _Kept,
        geometries: Sequence[LetterboxGeometry],
    ) -> tuple[list[InstanceMasks], np.ndarray]:
        """Per-frame box-cropped masks, and per-detection "mask not empty" flags."""
        cp = self.ctx.cp
        k_count = kept.image.size
        if k_count == 0:
            return [InstanceMasks.empty(g.frame_shape) for g in geometries], np.zeros(0, bool)
        nc = self.num_classes
        nm = int(protos.shape[1])
        mh, mw = int(protos.shape[2]), int(protos.shape[3])
        in_h, in_w = geometries[0].input_shape
        geo = np.zeros((k_count, 14), np.int32)
        for geom, rows in self._geometry_groups(kept.image, geometries):
            geo[rows] = self._crop_geometry(kept.boxes_input[rows], geom)
        sizes = geo[:, 2].astype(np.int64) * geo[:, 3]
        offsets = np.zeros(k_count, np.int64)
        offsets[1:] = np.cumsum(sizes)[:-1]
        total = int(sizes.sum())
        index = self._to_device(np.stack([kept.image, kept.anchor, offsets]).astype(np.int64), "index")
        image_dev, anchor_dev, offsets_dev = index[0], index[1], index[2]
        protos32 = cp.ascontiguousarray(protos, dtype=cp.float32)
        logits = self.ctx.device_buffer("post.logits", (k_count, mh * mw), np.float32)
        block = 256
        self._logits_kernel(
            ((mh * mw + block - 1) // block, k_count),
            (block,),
            (
                pred,
                np.int32(pred.shape[1]),
                np.int32(pred.shape[2]),
                np.int32(4 + nc),
                image_dev,
                anchor_dev,
                protos32,
                logits,
                np.int32(k_count),
                np.int32(nm),
                np.int32(mh * mw),
            ),
        )
        # One device buffer for the "not empty" flags (int32 each) and the crops behind them.
        head = 4 * k_count
        out_dev = self.ctx.device_buffer("post.out", (head + max(total, 1),), np.uint8)
        flags = out_dev[:head].view(cp.int32)
        flags.fill(0)
        if total:
            blocks_x = int(min(max(1, int(sizes.max()) // (4 * block)), 64))
            self._crops_kernel(
                (blocks_x, k_count),
                (block,),
                (
                    logits,
                    self._to_device(geo, "geo"),
                    offsets_dev,
                    out_dev[head:],
                    flags,
                    np.int32(mh),
                    np.int32(mw),
                    np.int32(in_h),
                    np.int32(in_w),
                    np.float32(self.logit_threshold),
                ),
            )
        host_all = self.ctx.download(out_dev[: head + total], "post.out")
        nonempty = host_all[:head].view(np.int32) != 0
        # The pinned buffer is overwritten by the next batch: one copy of the crops (a few hundred
        # KB for a batch), which every frame's masks then view.
        crops = host_all[head:].copy()
        self._mark("masks_gpu")
        out = frame_masks(crops, geo, offsets, kept.image, geometries)
        self._mark("masks_host")
        return out, nonempty

    def _crop_geometry(self, boxes: np.ndarray, geom: LetterboxGeometry) -> np.ndarray:
        """Per box: the CPU path's window (input pixels inside the box) and the frame pixels it reaches.

        Rows of ``geo`` for the mask kernel: crop x0, y0, w, h; window c0, c1, r0, r1; pad left, top;
        content w, h; frame w, h. Taps are monotonic, so the reached frame range is two searches.
        """
        in_h, in_w = geom.input_shape
        frame_h, frame_w = geom.frame_shape
        left, top, right, bottom = geom.content_box
        b = boxes.astype(np.float64)
        c0 = np.maximum(np.ceil(b[:, 0]), 0).astype(np.int64)
        c1 = np.minimum(np.ceil(b[:, 2]), in_w).astype(np.int64)
        r0 = np.maximum(np.ceil(b[:, 1]), 0).astype(np.int64)
        r1 = np.minimum(np.ceil(b[:, 3]), in_h).astype(np.int64)
        fx_low, fx_high, fy_low, fy_high = self._frame_taps(geom)
        # Frame pixels whose taps touch the window: high >= start and low < end.
        x0 = np.searchsorted(fx_high, c0, side="left")
        x1 = np.searchsorted(fx_low, c1, side="left")
        y0 = np.searchsorted(fy_high, r0, side="left")
        y1 = np.searchsorted(fy_low, r1, side="left")
        valid = (c0 < c1) & (r0 < r1) & (x0 < x1) & (y0 < y1)
        width = np.where(valid, x1 - x0, 0)
        height = np.where(valid, y1 - y0, 0)
        count = boxes.shape[0]
        const = np.array([left, top, right - left, bottom - top, frame_w, frame_h], np.int64)
        geo = np.column_stack(
            [np.where(valid, x0, 0), np.where(valid, y0, 0), width, height, c0, c1, r0, r1, np.tile(const, (count, 1))]
        )
        return geo.astype(np.int32)

    def _frame_taps(self, geom: LetterboxGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        key = (geom.frame_shape, geom.content_box)
        cached = self._taps_cache.get(key)
        if cached is None:
            left, top, right, bottom = geom.content_box
            fx_low, fx_high, _ = linear_taps(geom.frame_shape[1], right - left)
            fy_low, fy_high, _ = linear_taps(geom.frame_shape[0], bottom - top)
            cached = (fx_low + left, fx_high + left, fy_low + top, fy_high + top)
            if len(self._taps_cache) > 64:
                self._taps_cache.clear()
            self._taps_cache[key] = cached
        return cached
