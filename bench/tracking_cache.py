"""On-disk cache of the tracking benchmark's slow parts: detections, truth and the peer's tracks.

Rendering a sequence and segmenting it take minutes; the tracker takes a fraction of a second. So
each sequence's detections (trtseg ``Detections``, mask crops packed as bits) and truth
(``FrameTruth``) are kept per frame index under ``var/bench/cache``, in one file per sequence keyed by
everything that changes them: scenario, seed, seconds, size, the model file's digest, the detection
threshold, backend, device and precision. Inference at 5 fps uses every fifth of the 25 fps frames, so
one file serves every rate (a rate whose frames are missing has them added). The peer's per-frame
tracks do not change when trtseg's tracker does: its worker's JSON lines are kept per sequence, rate
and peer settings. ``bench_tracking.py --reuse-cache`` reads them; every run writes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT
from datasets.sequences import FrameTruth, TruthObject
from trtseg.detections import Detections
from trtseg.masks import InstanceMasks

CACHE_DIR = ROOT / "var" / "bench" / "cache"
FORMAT = 1  # bump when what is stored changes meaning


@lru_cache(maxsize=8)
def file_digest(path: str) -> str:
    """The first 16 hex digits of a file's SHA-256 (the model: a retrained one is another cache)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _key(fields: dict[str, Any]) -> str:
    text = json.dumps({"format": FORMAT, **fields}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def sequence_key(
    scenario: str,
    seed: int,
    seconds: float,
    size: tuple[int, int],
    model: str,
    conf: float,
    backend: str = "onnxruntime",
    device: str = "cpu",
    precision: str = "fp32",
) -> str:
    """Name of one sequence's detections and truth, from everything that changes them."""
    fields = {
        "scenario": scenario,
        "seed": seed,
        "seconds": round(float(seconds), 6),
        "size": list(size),
        "model": file_digest(str(model)),
        "conf": round(float(conf), 6),
        "backend": backend,
        "device": device,
        "precision": precision,
    }
    return f"{scenario}-s{seed}-{_key(fields)}"


def peer_key(seq_key: str, fps: float, settings: dict[str, Any]) -> str:
    """Name of the peer's tracks of one sequence at one rate, with its settings (conf, imgsz, device, half)."""
    return f"{seq_key}-peer-{fps:g}-{_key({'fps': fps, **settings})}"


# ----------------------------------------------------------------------------- packing
def _pack(mask: np.ndarray) -> tuple[int, int, bytes]:
    mask = np.asarray(mask, bool)
    return int(mask.shape[0]), int(mask.shape[1]), np.packbits(mask.reshape(-1)).tobytes()


def _unpack(h: int, w: int, bits: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bits, np.uint8), count=h * w).astype(bool).reshape(h, w)


def pack_detections(det: Detections) -> dict[str, Any]:
    masks = None if det.masks is None else [(int(x0), int(y0), *_pack(m)) for x0, y0, m in det.masks]
    return {
        "boxes": np.asarray(det.boxes, np.float32),
        "scores": np.asarray(det.scores, np.float32),
        "class_ids": np.asarray(det.class_ids, np.int32),
        "masks": masks,
        "names": dict(det.names),
        "frame_shape": tuple(det.frame_shape),
    }


def unpack_detections(rec: dict[str, Any]) -> Detections:
    shape = tuple(rec["frame_shape"])
    masks = None
    if rec["masks"] is not None:
        masks = InstanceMasks.from_crops(shape, [(x0, y0, _unpack(h, w, bits)) for x0, y0, h, w, bits in rec["masks"]])
    return Detections(rec["boxes"], rec["scores"], rec["class_ids"], masks, rec["names"], shape)  # type: ignore[arg-type]


def _pack_object(o: TruthObject) -> tuple[Any, ...]:
    return (o.track_id, o.class_id, o.x0, o.y0, *_pack(o.mask), o.visibility, tuple(o.anchor), dict(o.inside))


def _unpack_object(rec: tuple[Any, ...]) -> TruthObject:
    tid, cid, x0, y0, h, w, bits, visibility, anchor, inside = rec
    return TruthObject(tid, cid, x0, y0, _unpack(h, w, bits), visibility, tuple(anchor), inside)


def pack_truth(truth: FrameTruth) -> tuple[Any, ...]:
    return (truth.index, truth.t, [_pack_object(o) for o in truth.objects], [_pack_object(o) for o in truth.ignored])


def unpack_truth(rec: tuple[Any, ...]) -> FrameTruth:
    index, t, objects, ignored = rec
    return FrameTruth(index, t, [_unpack_object(o) for o in objects], [_unpack_object(o) for o in ignored])


# ----------------------------------------------------------------------------- files
class SequenceCache:
    """One sequence's cached frames: index -> (packed detections, packed truth)."""

    def __init__(self, key: str, directory: Path = CACHE_DIR) -> None:
        self.path = Path(directory) / f"{key}.pkl"
        self.frames: dict[int, tuple[dict[str, Any], tuple[Any, ...]]] = {}
        self.dirty = False

    def load(self) -> SequenceCache:
        if self.path.exists():
            with open(self.path, "rb") as f:
                self.frames = pickle.load(f)
        return self

    def missing(self, indices: list[int]) -> list[int]:
        return [i for i in indices if i not in self.frames]

    def put(self, index: int, det: Detections, truth: FrameTruth) -> None:
        self.frames[index] = (pack_detections(det), pack_truth(truth))
        self.dirty = True

    def get(self, index: int) -> tuple[Detections, FrameTruth]:
        det, truth = self.frames[index]
        return unpack_detections(det), unpack_truth(truth)

    def save(self) -> None:
        if not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            pickle.dump(self.frames, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(self.path)
        self.dirty = False


def peer_path(key: str, directory: Path = CACHE_DIR) -> Path:
    return Path(directory) / f"{key}.jsonl"


def keep_peer(source: Path, key: str, directory: Path = CACHE_DIR) -> Path:
    """Copy the peer worker's output for ``key`` into the cache; the cached path."""
    target = peer_path(key, directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    shutil.copyfile(source, tmp)
    tmp.replace(target)
    return target
