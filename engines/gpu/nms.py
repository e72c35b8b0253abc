"""Class-aware NMS on the GPU: torchvision's kernel when PyTorch is there, else a CuPy bitmask kernel.

Both keep Ultralytics' semantics: boxes of different groups (image x class) never suppress each
other, a box is dropped when its IoU with a kept, higher-scoring box of its group exceeds ``iou``,
and the kept indices come back in descending score order.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from engines.gpu import require_cupy

logger = logging.getLogger(__name__)

_BLOCK = 64

_NMS_KERNEL = r"""
extern "C" __global__ void nms_mask(const int n, const float iou_threshold, const float* __restrict__ boxes,
                                    const long long* __restrict__ groups, unsigned long long* __restrict__ mask,
                                    const int col_blocks) {
    const int row_start = blockIdx.y, col_start = blockIdx.x;
    if (row_start > col_start) return;  // only boxes after a box (lower score) are suppressed by it
    const int row_size = min(n - row_start * 64, 64), col_size = min(n - col_start * 64, 64);
    __shared__ float block_boxes[64 * 4];
    __shared__ long long block_groups[64];
    if (threadIdx.x < col_size) {
        const int j = col_start * 64 + threadIdx.x;
        #pragma unroll
        for (int k = 0; k < 4; ++k) block_boxes[threadIdx.x * 4 + k] = boxes[j * 4 + k];
        block_groups[threadIdx.x] = groups[j];
    }
    __syncthreads();
    if (threadIdx.x < row_size) {
        const int i = row_start * 64 + threadIdx.x;
        const float* a = boxes + i * 4;
        const float area_a = fmaxf(a[2] - a[0], 0.f) * fmaxf(a[3] - a[1], 0.f);
        unsigned long long bits = 0;
        const int start = (row_start == col_start) ? threadIdx.x + 1 : 0;
        for (int j = start; j < col_size; ++j) {
            if (block_groups[j] != groups[i]) continue;
            const float* b = block_boxes + j * 4;
            const float w = fmaxf(fminf(a[2], b[2]) - fmaxf(a[0], b[0]), 0.f);
            const float h = fmaxf(fminf(a[3], b[3]) - fmaxf(a[1], b[1]), 0.f);
            const float inter = w * h;
            const float area_b = fmaxf(b[2] - b[0], 0.f) * fmaxf(b[3] - b[1], 0.f);
            if (inter / (area_a + area_b - inter) > iou_threshold) bits |= 1ULL << j;
        }
        mask[(long long)i * col_blocks + col_start] = bits;
    }
}
"""


def kernel_source() -> str:
    return _NMS_KERNEL


_compiled: dict[int, Any] = {}


def _kernel(device_index: int) -> Any:
    cp = require_cupy()
    if device_index not in _compiled:
        _compiled[device_index] = cp.RawKernel(_NMS_KERNEL, "nms_mask")
    return _compiled[device_index]


def torchvision_available() -> bool:
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError:
        return False
    return True


def batched_nms(boxes: Any, scores: Any, groups: Any, iou: float, prefer_torch: bool = True) -> Any:
    """Indices (CuPy int64) of the boxes kept, highest score first.

    boxes (K, 4) xyxy float32, scores (K,), groups (K,) int64 - all CuPy arrays on one device.
    """
    cp = require_cupy()
    if boxes.shape[0] == 0:
        return cp.zeros((0,), cp.int64)
    if prefer_torch and torchvision_available():
        import torch
        import torchvision

        # Run on CuPy's current stream so no cross-stream synchronisation is needed.
        stream = torch.cuda.ExternalStream(cp.cuda.get_current_stream().ptr)
        with torch.cuda.stream(stream):
            keep = torchvision.ops.batched_nms(
                torch.from_dlpack(cp.ascontiguousarray(boxes, dtype=cp.float32)),
                torch.from_dlpack(cp.ascontiguousarray(scores, dtype=cp.float32)),
                torch.from_dlpack(cp.ascontiguousarray(groups, dtype=cp.int64)),
                float(iou),
            )
            return cp.from_dlpack(keep)
    return nms_cupy(boxes, scores, groups, iou)


def nms_cupy(boxes: Any, scores: Any, groups: Any, iou: float) -> Any:
    """Bitmask NMS (torchvision's algorithm): a kernel marks suppressions, the host walks the bits."""
    cp = require_cupy()
    n = int(boxes.shape[0])
    if n == 0:
        return cp.zeros((0,), cp.int64)
    order = cp.argsort(-scores.astype(cp.float32), kind="stable")
    sorted_boxes = cp.ascontiguousarray(boxes[order], dtype=cp.float32)
    sorted_groups = cp.ascontiguousarray(groups[order], dtype=cp.int64)
    col_blocks = (n + _BLOCK - 1) // _BLOCK
    mask = cp.zeros((n, col_blocks), dtype=cp.uint64)
    _kernel(cp.cuda.Device().id)(
        (col_blocks, col_blocks),
        (_BLOCK,),
        (np.int32(n), np.float32(iou), sorted_boxes, sorted_groups, mask, np.int32(col_blocks)),
    )
    host_mask = cp.asnumpy(mask)
    removed = np.zeros(col_blocks, dtype=np.uint64)
    keep: list[int] = []
    for i in range(n):
        block, bit = divmod(i, _BLOCK)
        if (int(removed[block]) >> bit) & 1:
            continue
        keep.append(i)
        removed |= host_mask[i]
    return order[cp.asarray(np.asarray(keep, dtype=np.int64))]
