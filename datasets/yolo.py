"""Write generated scenes as a YOLO segmentation data set (ultralytics layout).

Layout: ``<root>/images/<split>/<name>.jpg``, ``<root>/labels/<split>/<name>.txt`` (one
line per instance: ``class x1 y1 x2 y2 ...`` with coordinates normalised to [0, 1]) and
``<root>/data.yaml``. Each split draws its scene seeds from its own disjoint range, so a
test set never shares a scene with training.

CLI: ``python -m datasets.yolo OUT --train 4000 --val 400 --test 500 --workers 16``
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from datasets.scenes import CLASS_NAMES, Scene, SceneConfig, generate_scene

log = logging.getLogger(__name__)

# Seeds of split s are SPLIT_SEED_BASE[s] + i. The ranges are 10^8 apart: disjoint for any
# realistic data set size.
SPLIT_SEED_BASE: dict[str, int] = {"train": 0, "val": 100_000_000, "test": 200_000_000}


def label_lines(scene: Scene) -> list[str]:
    """YOLO segmentation label lines for a scene (normalised polygon per instance)."""
    h, w = scene.image.shape[:2]
    lines: list[str] = []
    for ins in scene.instances:
        p = ins.polygon.astype(np.float64) / np.array([w, h])
        p = np.clip(p, 0.0, 1.0)
        coords = " ".join(f"{v:.6f}" for v in p.reshape(-1))
        lines.append(f"{ins.class_id} {coords}")
    return lines


def _write_one(args: tuple[Path, str, int, SceneConfig, int]) -> tuple[int, list[int]]:
    root, split, seed, cfg, quality = args
    scene = generate_scene(seed, cfg)
    name = f"{split}_{seed:09d}"
    if not cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), scene.image, [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"cannot write image {name}")
    (root / "labels" / split / f"{name}.txt").write_text(
        "\n".join(label_lines(scene)) + ("\n" if scene.instances else "")
    )
    return seed, [ins.class_id for ins in scene.instances]


def write_yolo_dataset(
    root: str | os.PathLike[str],
    counts: dict[str, int],
    config: SceneConfig | None = None,
    workers: int = 1,
    jpeg_quality: int = 95,
    seed_offset: int = 0,
) -> Path:
    """Generate the splits in `counts` (e.g. {"train": 4000, "val": 400}) under `root`.

    Returns the path of the written data.yaml. `seed_offset` shifts every split's seeds
    (a different but still disjoint draw). `workers` > 1 renders in processes.
    """
    cfg = config or SceneConfig()
    out = Path(root)
    jobs: list[tuple[Path, str, int, SceneConfig, int]] = []
    for split, n in counts.items():
        if split not in SPLIT_SEED_BASE:
            raise ValueError(f"unknown split {split!r}; use {sorted(SPLIT_SEED_BASE)}")
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        base = SPLIT_SEED_BASE[split] + seed_offset
        jobs += [(out, split, base + i, cfg, jpeg_quality) for i in range(n)]
    t0 = time.perf_counter()
    hist = np.zeros(len(CLASS_NAMES), np.int64)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            results = list(ex.map(_write_one, jobs, chunksize=8))
    else:
        results = [_write_one(j) for j in jobs]
    for _, ids in results:
        for c in ids:
            hist[c] += 1
    log.info(
        "wrote %d images in %.1fs (%s)",
        len(jobs),
        time.perf_counter() - t0,
        ", ".join(f"{n}={int(k)}" for n, k in zip(CLASS_NAMES, hist, strict=True)),
    )
    yaml_path = out / "data.yaml"
    lines = [f"path: {out.resolve()}"]
    for split in counts:
        lines.append(f"{split}: images/{split}")
    lines.append("names:")
    lines += [f"  {i}: {n}" for i, n in enumerate(CLASS_NAMES)]
    yaml_path.write_text("\n".join(lines) + "\n")
    return yaml_path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--val", type=int, default=400)
    ap.add_argument("--test", type=int, default=0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed-offset", type=int, default=0)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    counts = {k: v for k, v in (("train", a.train), ("val", a.val), ("test", a.test)) if v > 0}
    log.info("data set: %s", write_yolo_dataset(a.out, counts, workers=a.workers, seed_offset=a.seed_offset))


if __name__ == "__main__":
    main()
