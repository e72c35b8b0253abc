"""Letterbox on the GPU: frames uploaded once, then one fused kernel per batch.

The kernel resizes (bilinear, OpenCV's half-pixel ``INTER_LINEAR`` convention with the same edge
clamping, rounded to uint8 like ``cv2.resize`` does), pads with 114, swaps BGR to RGB, scales to
[0, 1] and writes NCHW (or channels-last) fp32/fp16 straight into the backend's input buffer. The
geometry is the CPU path's own (``engines.preprocess.batch_geometry``), so both paths put every
frame at the same place.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.base import EngineError
from engines.gpu.memory import GpuContext
from engines.preprocess import PAD_VALUE, LetterboxGeometry, batch_geometry, check_image

logger = logging.getLogger(__name__)

PARAMS_PER_FRAME = 8  # offset, height, width, new_height, new_width, top, left, unused
_ALIGN = 256  # byte alignment of each frame in the staging buffer

_KERNEL = r"""
__device__ __forceinline__ unsigned short f32_to_f16_bits(float v) {
    // Values here are in [0, 1]: either 0 or normal in half precision; round to nearest even.
    if (v <= 0.0f) return 0;
    unsigned int u = __float_as_uint(v);
    int e = (int)((u >> 23) & 0xff) - 127 + 15;
    if (e <= 0) return 0;
    unsigned int m = u & 0x7fffff;
    unsigned int h = ((unsigned int)e << 10) | (m >> 13);
    unsigned int rem = m & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1u))) h += 1;
    return (unsigned short)h;
}

__device__ __forceinline__ void store(float* dst, long long i, float v) { dst[i] = v; }
__device__ __forceinline__ void store(unsigned short* dst, long long i, float v) { dst[i] = f32_to_f16_bits(v); }

template <typename T>
__device__ void letterbox(const unsigned char* __restrict__ src, const long long* __restrict__ params,
                          T* __restrict__ dst, int out_h, int out_w, long long sb, long long sc, long long sy,
                          long long sx, int n_frames, float pad, int round_u8) {
    // pad: the border grey level (0..255)
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    const int b = blockIdx.z;
    if (x >= out_w || y >= out_h || b >= n_frames) return;
    const long long* p = params + (long long)b * 8;
    const long long offset = p[0];
    const int h = (int)p[1], w = (int)p[2], nh = (int)p[3], nw = (int)p[4], top = (int)p[5], left = (int)p[6];
    const int ix = x - left, iy = y - top;
    float c0 = pad, c1 = pad, c2 = pad;  // B, G, R
    if (ix >= 0 && iy >= 0 && ix < nw && iy < nh) {
        const unsigned char* img = src + offset;
        float fx = (float)((ix + 0.5) * ((double)w / nw) - 0.5);
        float fy = (float)((iy + 0.5) * ((double)h / nh) - 0.5);
        int x0 = (int)floorf(fx), y0 = (int)floorf(fy);
        float ax = fx - x0, ay = fy - y0;
        if (x0 < 0) { x0 = 0; ax = 0.f; }
        if (y0 < 0) { y0 = 0; ay = 0.f; }
        if (x0 >= w - 1) { x0 = w - 1; ax = 0.f; }
        if (y0 >= h - 1) { y0 = h - 1; ay = 0.f; }
        const int x1 = min(x0 + 1, w - 1), y1 = min(y0 + 1, h - 1);
        const unsigned char* r0 = img + (long long)y0 * w * 3;
        const unsigned char* r1 = img + (long long)y1 * w * 3;
        float v[3];
        #pragma unroll
        for (int c = 0; c < 3; ++c) {
            const float top_v = r0[x0 * 3 + c] * (1.f - ax) + r0[x1 * 3 + c] * ax;
            const float bot_v = r1[x0 * 3 + c] * (1.f - ax) + r1[x1 * 3 + c] * ax;
            float val = top_v * (1.f - ay) + bot_v * ay;
            if (round_u8) val = floorf(val + 0.5f);
            v[c] = val;
        }
        c0 = v[0]; c1 = v[1]; c2 = v[2];
    }
    // Scale at the end, pad included, exactly as cv2.dnn.blobFromImages does (value * float(1/255)).
    const float scale = 1.0f / 255.0f;
    const long long base = (long long)b * sb + (long long)y * sy + (long long)x * sx;
    store(dst, base, c2 * scale);           // R
    store(dst, base + sc, c1 * scale);      // G
    store(dst, base + 2 * sc, c0 * scale);  // B
}

extern "C" __global__ void letterbox_f32(const unsigned char* src, const long long* params, float* dst,
                                         int out_h, int out_w, long long sb, long long sc, long long sy,
                                         long long sx, int n_frames, float pad, int round_u8) {
    letterbox<float>(src, params, dst, out_h, out_w, sb, sc, sy, sx, n_frames, pad, round_u8);
}

extern "C" __global__ void letterbox_f16(const unsigned char* src, const long long* params, unsigned short* dst,
                                         int out_h, int out_w, long long sb, long long sc, long long sy,
                                         long long sx, int n_frames, float pad, int round_u8) {
    letterbox<unsigned short>(src, params, dst, out_h, out_w, sb, sc, sy, sx, n_frames, pad, round_u8);
}
"""


def kernel_source() -> str:
    """The CUDA source (exposed so it can be compiled offline for a syntax and resource check)."""
    return _KERNEL


def _staging_layout(frames: Sequence[np.ndarray]) -> tuple[list[int], int]:
    """Byte offset of each frame in the staging buffer (aligned), and the total size."""
    offsets: list[int] = []
    cursor = 0
    for frame in frames:
        offsets.append(cursor)
        cursor += (frame.nbytes + _ALIGN - 1) // _ALIGN * _ALIGN
    return offsets, cursor


@dataclass(slots=True)
class Staged:
    """A batch uploaded (or uploading) into one staging slot, ready for ``GpuLetterbox.launch``."""

    slot: int
    count: int
    geometries: list[LetterboxGeometry]
    frames: Any  # device bytes of the slot
    params: Any  # device (count, 8) int64
    uploaded: Any  # event recorded on the upload stream after the last copy
    sources: list[np.ndarray]  # kept alive until the upload is done (pinned frames upload in place)


SPLIT_COPY_BYTES = 1 << 20  # a lone frame at least this big is copied into pinned memory by several threads


class GpuLetterbox:
    """Uploads batches of BGR frames and letterboxes them on the GPU into a caller-owned tensor.

    Two staging slots (pinned host + device) and a separate upload stream let the next batch be
    staged (``stage``, safe from another thread) while the current one computes (``launch``).
    ``copy_threads`` host threads fill the pinned buffer in parallel (NumPy copies release the GIL)
    and each issues its frame's upload as soon as its copy is done, so host copies and PCIe
    transfers overlap too.
    """

    SLOTS = 2

    def __init__(self, context: GpuContext, copy_threads: int | None = None, round_u8: bool = True) -> None:
        self.ctx = context
        self.round_u8 = round_u8
        cp = context.cp
        with context.device:
            module = cp.RawModule(code=_KERNEL, options=("--std=c++17",))
            self._kernels = {
                np.dtype(np.float32): module.get_function("letterbox_f32"),
                np.dtype(np.float16): module.get_function("letterbox_f16"),
            }
            self.upload_stream = cp.cuda.Stream(non_blocking=True)
            # Recorded on the compute stream once a slot's kernel has read it: the slot is free again.
            self._consumed = [cp.cuda.Event(block=False, disable_timing=True) for _ in range(self.SLOTS)]
        self._next_slot = 0
        self._threads = copy_threads or min(8, os.cpu_count() or 4)
        self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="trtseg-stage")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def geometry(
        self, images: Sequence[np.ndarray], target: tuple[int, int], stride: int, rectangular: bool
    ) -> list[LetterboxGeometry]:
        """The same per-frame geometry the CPU path computes (validates every frame)."""
        for i, image in enumerate(images):
            try:
                check_image(image, i)
            except ValueError as exc:
                raise EngineError(str(exc)) from exc
        return batch_geometry([image.shape[:2] for image in images], target, stride, rectangular)

    def stage(self, images: Sequence[np.ndarray], geometries: Sequence[LetterboxGeometry]) -> Staged:
        """Copy the frames into the next staging slot and start their upload (returns at once after)."""
        count = len(images)
        slot = self._next_slot
        self._next_slot = (slot + 1) % self.SLOTS
        self._consumed[slot].synchronize()  # the slot's previous batch has been letterboxed
        offsets, total = _staging_layout(images)
        params = np.zeros((max(count, 1), PARAMS_PER_FRAME), np.int64)
        for i, (image, geom, offset) in enumerate(zip(images, geometries, offsets, strict=True)):
            new_w, new_h = geom.resized
            left, top = geom.pad
            params[i] = (offset, image.shape[0], image.shape[1], new_h, new_w, top, left, 0)
        host = self.ctx.pinned(f"letterbox.frames.{slot}", max(total, 1))
        host_params = self.ctx.pinned(f"letterbox.params.{slot}", params.nbytes)
        host_params.view(np.int64)[:] = params.ravel()
        dev_frames = self.ctx.device_buffer(f"letterbox.frames.{slot}", (max(total, 1),), np.uint8)
        dev_params = self.ctx.device_buffer(f"letterbox.params.{slot}", params.shape, np.int64)
        stream = self.upload_stream

        def copy(i: int) -> None:
            image, offset = images[i], offsets[i]
            target = dev_frames[offset : offset + image.nbytes]
            with self.ctx.device:  # the current device is per thread
                if image.flags.c_contiguous and self.ctx.is_pinned(image):
                    self.ctx.upload(image.reshape(-1), target, stream)  # already page-locked: no host copy
                    return
                np.copyto(host[offset : offset + image.nbytes].reshape(image.shape), image, casting="no")
                self.ctx.upload(host[offset : offset + image.nbytes], target, stream)

        def copy_rows(rows: tuple[int, int]) -> None:
            image = images[0]
            np.copyto(
                host[: image.nbytes].reshape(image.shape)[rows[0] : rows[1]], image[rows[0] : rows[1]], casting="no"
            )

        with self.ctx.device:
            self.ctx.upload(host_params, dev_params, stream)
            single = images[0] if count == 1 else None
            if single is not None and single.nbytes >= SPLIT_COPY_BYTES and not self.ctx.is_pinned(single):
                # One frame: its host copy is the latency, so its rows are copied by several threads.
                bounds = np.linspace(0, single.shape[0], self._threads + 1).astype(int)
                list(self._pool.map(copy_rows, itertools.pairwise(bounds.tolist())))
                self.ctx.upload(host[: single.nbytes], dev_frames[: single.nbytes], stream)
            elif count == 1:
                copy(0)
            elif count:
                list(self._pool.map(copy, range(count)))
            uploaded = self.ctx.cp.cuda.Event(block=False, disable_timing=True)
            uploaded.record(stream)
        return Staged(slot, count, list(geometries), dev_frames, dev_params, uploaded, list(images))

    def launch(self, staged: Staged, out: Any) -> None:
        """Letterbox a staged batch into ``out`` (CuPy (B, 3, H, W) view, any strides) on the compute stream.

        Batch slots past the staged count are left untouched.
        """
        count = staged.count
        if count == 0:
            return
        if out.ndim != 4 or out.shape[1] != 3 or out.shape[0] < count:
            raise EngineError(f"letterbox output must be (>= {count}, 3, H, W), got {out.shape}")
        kernel = self._kernels.get(np.dtype(out.dtype))
        if kernel is None:
            raise EngineError(f"letterbox writes float32 or float16, not {out.dtype}")
        out_h, out_w = int(out.shape[2]), int(out.shape[3])
        for geom in staged.geometries:
            if geom.input_shape != (out_h, out_w):
                raise EngineError(f"geometry canvas {geom.input_shape} does not match the input {(out_h, out_w)}")
        itemsize = out.dtype.itemsize
        strides = [stride // itemsize for stride in out.strides]
        block = (32, 8, 1)
        grid = ((out_w + block[0] - 1) // block[0], (out_h + block[1] - 1) // block[1], count)
        with self.ctx.active():
            self.ctx.stream.wait_event(staged.uploaded)
            kernel(
                grid,
                block,
                (
                    staged.frames,
                    staged.params,
                    out,
                    np.int32(out_h),
                    np.int32(out_w),
                    np.int64(strides[0]),
                    np.int64(strides[1]),
                    np.int64(strides[2]),
                    np.int64(strides[3]),
                    np.int32(count),
                    np.float32(PAD_VALUE),
                    np.int32(1 if self.round_u8 else 0),
                ),
            )
            self._consumed[staged.slot].record(self.ctx.stream)

    def run(self, images: Sequence[np.ndarray], geometries: Sequence[LetterboxGeometry], out: Any) -> None:
        """Stage and launch in one call (no overlap with other work)."""
        self.launch(self.stage(images, geometries), out)
