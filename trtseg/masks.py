"""Instance masks as box crops: the one mask representation of the system.

A full-frame bool mask per instance is almost all zeros (0.9 MB per instance at 1280x720, while a
cable's box is a few KB), and both engine paths only ever compute a mask inside a window around its
box. ``InstanceMasks`` keeps just those windows: per instance an origin in frame pixels and a 2-D
bool crop, all crops in one flat buffer. That is three plain arrays, which Ray's object store moves
without copying them element by element, and each crop is a zero-copy view of the buffer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

Index = int | np.integer | slice | Sequence[int] | Sequence[bool] | np.ndarray


class MaskCrop(NamedTuple):
    """One instance's mask: frame pixel (x0 + c, y0 + r) is ``mask[r, c]``; outside the crop it is False."""

    x0: int
    y0: int
    mask: np.ndarray  # (h, w) bool, possibly (0, 0)


@dataclass(slots=True, frozen=True, eq=False, repr=False)
class InstanceMasks:
    """Masks of N instances of one (H, W) frame, each stored only as its crop.

    rects: (N, 4) int32 x0, y0, w, h of each crop in frame pixels (inside the frame);
    offsets: (N,) int64 start of each crop in ``data``; data: flat bool buffer, crop i being
    ``data[offsets[i] : offsets[i] + w * h].reshape(h, w)``. Crops of subsets and of the frames of a
    batch share one buffer, so it is read-only: build new masks instead of writing into a crop.
    Indexing, ``len`` and ``shape`` follow an (N, H, W) bool array; ``np.asarray`` densifies.
    """

    frame_shape: tuple[int, int]  # (height, width)
    rects: np.ndarray
    offsets: np.ndarray
    data: np.ndarray

    def __post_init__(self) -> None:
        height, width = (int(v) for v in self.frame_shape)
        rects = np.asarray(self.rects, dtype=np.int32).reshape(-1, 4)
        offsets = np.asarray(self.offsets, dtype=np.int64).reshape(-1)
        data = np.asarray(self.data)
        if data.dtype == np.uint8:  # 0/1 bytes, as a GPU kernel writes them
            data = data.view(bool)
        if data.dtype != bool or data.ndim != 1:
            raise ValueError(f"mask data must be a flat bool buffer, got {data.dtype} of shape {data.shape}")
        if height < 0 or width < 0:
            raise ValueError(f"bad frame shape {self.frame_shape}")
        if offsets.shape[0] != rects.shape[0]:
            raise ValueError(f"{rects.shape[0]} crops but {offsets.shape[0]} offsets")
        if rects.size:
            x0, y0, w, h = (rects[:, i].astype(np.int64) for i in range(4))
            if (rects < 0).any() or (x0 + w > width).any() or (y0 + h > height).any():
                raise ValueError(f"mask crops reach outside the {height}x{width} frame")
            if (offsets < 0).any() or (offsets + w * h > data.size).any():
                raise ValueError("mask crops reach outside their buffer")
        if data.flags.writeable:
            data = data.view()
            data.flags.writeable = False
        object.__setattr__(self, "frame_shape", (height, width))
        object.__setattr__(self, "rects", rects)
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "data", data)

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def empty(cls, frame_shape: tuple[int, int]) -> InstanceMasks:
        """No instances (what a frame without detections carries)."""
        return cls(frame_shape, np.zeros((0, 4), np.int32), np.zeros(0, np.int64), np.zeros(0, bool))

    @classmethod
    def from_crops(cls, frame_shape: tuple[int, int], crops: Sequence[tuple[int, int, np.ndarray]]) -> InstanceMasks:
        """From per-instance (x0, y0, (h, w) bool crop), copied once into one buffer (the CPU engine's way)."""
        rects = np.array([(x0, y0, m.shape[1], m.shape[0]) for x0, y0, m in crops], np.int32).reshape(-1, 4)
        sizes = rects[:, 2].astype(np.int64) * rects[:, 3]
        offsets = np.zeros(len(crops), np.int64)
        np.cumsum(sizes[:-1], out=offsets[1:])
        data = np.concatenate([np.asarray(m, bool).reshape(-1) for _, _, m in crops]) if crops else np.zeros(0, bool)
        return cls(frame_shape, rects, offsets, data)

    @classmethod
    def from_buffer(
        cls, frame_shape: tuple[int, int], rects: np.ndarray, offsets: np.ndarray, data: np.ndarray
    ) -> InstanceMasks:
        """Views into a shared flat buffer (a batch's crops), narrowed to the span these crops use.

        No copy: the caller hands over ``data`` and must not write into it afterwards.
        """
        rects = np.asarray(rects, np.int32).reshape(-1, 4)
        offsets = np.asarray(offsets, np.int64).reshape(-1)
        if offsets.size == 0:
            return cls(frame_shape, rects, offsets, np.asarray(data)[:0])
        ends = offsets + rects[:, 2].astype(np.int64) * rects[:, 3]
        low, high = int(offsets.min()), int(ends.max())
        return cls(frame_shape, rects, offsets - low, np.asarray(data)[low:high])

    @classmethod
    def from_dense(cls, masks: np.ndarray, tight: bool = True) -> InstanceMasks:
        """From (N, H, W) masks: each cropped to the box around its pixels (0x0 when it has none), or to
        the whole frame when ``tight`` is False. For tests, tools and callers that build dense masks."""
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim != 3:
            raise ValueError(f"dense masks are (N, H, W), got shape {masks.shape}")
        count, height, width = masks.shape
        if not tight:
            rects = np.tile(np.array([0, 0, width, height], np.int32), (count, 1))
            offsets = np.arange(count, dtype=np.int64) * (height * width)
            return cls((height, width), rects, offsets, np.ascontiguousarray(masks).reshape(-1))
        rows_any, cols_any = masks.any(axis=2), masks.any(axis=1)
        crops: list[tuple[int, int, np.ndarray]] = []
        for i in range(count):
            rows, cols = np.flatnonzero(rows_any[i]), np.flatnonzero(cols_any[i])
            if rows.size == 0:
                crops.append((0, 0, np.zeros((0, 0), bool)))
                continue
            y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
            crops.append((x0, y0, masks[i, y0:y1, x0:x1]))
        return cls.from_crops((height, width), crops)

    # -- array-like access -------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.rects.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(N, H, W): the shape of the dense array these masks stand for."""
        return (len(self), *self.frame_shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(bool)

    @property
    def sizes(self) -> np.ndarray:
        """(N,) int64 pixels in each crop (w * h)."""
        return self.rects[:, 2].astype(np.int64) * self.rects[:, 3]

    @property
    def nbytes(self) -> int:
        """Bytes of the crops and their geometry: what pickling carries (a dense array is N*H*W)."""
        return int(self.sizes.sum()) + self.rects.nbytes + self.offsets.nbytes

    def __getitem__(self, index: Index) -> InstanceMasks:
        """The instances selected along the first axis, as NumPy would (an int keeps one instance)."""
        if isinstance(index, int | np.integer):
            index = [int(index)]
        rows = np.arange(len(self))[index]
        if rows.ndim != 1:
            raise IndexError(f"instance masks take a 1-D index, got {index!r}")
        return InstanceMasks(self.frame_shape, self.rects[rows], self.offsets[rows], self.data)

    def crop(self, i: int) -> MaskCrop:
        """Instance ``i``'s origin and crop (a read-only view of the buffer)."""
        x0, y0, w, h = (int(v) for v in self.rects[i])
        start = int(self.offsets[i])
        return MaskCrop(x0, y0, self.data[start : start + w * h].reshape(h, w))

    def __iter__(self) -> Iterator[MaskCrop]:
        """Per instance ``(x0, y0, crop)``: for consumers that work one instance at a time."""
        return (self.crop(i) for i in range(len(self)))

    def dense(self) -> np.ndarray:
        """(N, H, W) bool full-frame masks (a fresh array; costs N*H*W bytes)."""
        out = np.zeros(self.shape, bool)
        for k, (x0, y0, mask) in enumerate(self):
            out[k, y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]] = mask
        return out

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            raise ValueError("InstanceMasks has no dense array to share: densifying always copies")
        dense = self.dense()
        return dense if dtype is None else dense.astype(dtype, copy=False)

    # -- queries without densifying ----------------------------------------------------------------

    def areas(self) -> np.ndarray:
        """(N,) int64 mask pixels per instance."""
        return np.array([np.count_nonzero(m) for _, _, m in self], np.int64).reshape(-1)

    def intersects(self, region: np.ndarray) -> np.ndarray:
        """(N,) bool: whether each mask shares a pixel with ``region``, an (H, W) bool frame mask."""
        region = np.asarray(region, dtype=bool)
        if region.shape != self.frame_shape:
            raise ValueError(f"region of shape {region.shape} does not fit {self.frame_shape} masks")
        out = np.zeros(len(self), bool)
        for k, (x0, y0, mask) in enumerate(self):
            if mask.size:
                out[k] = np.logical_and(region[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]], mask).any()
        return out

    # -- serialisation -----------------------------------------------------------------------------

    def compact(self) -> InstanceMasks:
        """The same masks in a buffer holding exactly these crops in order (self when it already does)."""
        sizes = self.sizes
        offsets = np.zeros(len(self), np.int64)
        np.cumsum(sizes[:-1], out=offsets[1:])
        if self.data.size == int(sizes.sum()) and np.array_equal(offsets, self.offsets):
            return self
        data = np.empty(int(sizes.sum()), bool)
        for start, src, size in zip(offsets.tolist(), self.offsets.tolist(), sizes.tolist(), strict=True):
            data[start : start + size] = self.data[src : src + size]
        return InstanceMasks(self.frame_shape, self.rects, offsets, data)

    def __reduce__(self) -> tuple[Any, ...]:
        # Only the crops this object uses travel (a subset or one frame of a batch shares a larger
        # buffer), eight pixels a byte: masks go from the segmenter to every camera's decoder and on
        # to its pusher each inferred frame, and bool bytes made them most of that traffic.
        packed = self.compact()
        bits = np.packbits(packed.data.view(np.uint8))
        return (_unpacked, (packed.frame_shape, packed.rects, packed.offsets, bits, int(packed.data.size)))

    def __repr__(self) -> str:
        return f"InstanceMasks(n={len(self)}, frame_shape={self.frame_shape}, nbytes={self.nbytes})"


def _unpacked(
    frame_shape: tuple[int, int], rects: np.ndarray, offsets: np.ndarray, bits: np.ndarray, size: int
) -> InstanceMasks:
    """``InstanceMasks.__reduce__``'s other half: the bit-packed buffer back to one bool per pixel."""
    return InstanceMasks(frame_shape, rects, offsets, np.unpackbits(bits, count=size).view(bool))
