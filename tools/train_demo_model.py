"""Train trtseg's demo model: YOLOv8n-seg from scratch on generated scenes, then export to ONNX.

No weights can be downloaded where trtseg runs, so the shipped model is made here: the
data come from `datasets.scenes` (seeds per split are disjoint), the network is
ultralytics' bundled ``yolov8n-seg.yaml`` with random init, and the result is validated
on a held-out generated test split, exported to ONNX and validated again as ONNX.

Runs fully offline: nothing may try the network (AMP check, hub, fonts, auto-installs).

Example (GPU): python tools/train_demo_model.py --out out --data-dir /tmp/data \
    --train 4000 --val 300 --test 500 --epochs 60 --time-min 6 --batch 64 --workers 16
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics: never reach the hub
os.environ.setdefault("YOLO_VERBOSE", "True")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `datasets`

from datasets.scenes import CLASS_NAMES
from datasets.yolo import write_yolo_dataset

log = logging.getLogger("train_demo_model")


def _offline_patches() -> None:
    """Keep ultralytics from downloading: the AMP self-test fetches a model, results
    reading needs polars (a 50 MB wheel we do not carry), settings sync pings the hub."""
    import ultralytics.engine.trainer as trainer_mod
    from ultralytics.utils import SETTINGS

    SETTINGS.update({"sync": False})
    trainer_mod.check_amp = lambda model: True  # type: ignore[assignment]
    try:
        import polars  # noqa: F401
    except ImportError:

        def read_results_csv(self: Any) -> dict[str, list[Any]]:
            try:
                rows = list(csv.DictReader(io.StringIO(self.csv.read_text())))
            except Exception:
                return {}
            out: dict[str, list[Any]] = {}
            for row in rows:
                for k, v in row.items():
                    out.setdefault(k.strip(), []).append(float(v))
            return out

        trainer_mod.BaseTrainer.read_results_csv = read_results_csv  # type: ignore[method-assign]


def _scrub_checkpoint(path: Path) -> None:
    """Drop this machine's paths from the checkpoint's recorded train args (it gets shipped)."""
    import torch

    ck = torch.load(path, map_location="cpu", weights_only=False)
    arg_dicts = [ck.get("train_args") or {}]
    for key in ("model", "ema"):
        args = getattr(ck.get(key), "args", None)
        if isinstance(args, dict):
            arg_dicts.append(args)
    for ta in arg_dicts:
        for k in ("data", "project", "save_dir", "model"):
            if ta.get(k):
                ta[k] = Path(str(ta[k])).name
    ck.pop("git", None)
    torch.save(ck, path)


def _set_onnx_description(path: Path) -> dict[str, str]:
    """Say what the model was trained on (no machine paths); keep ultralytics' other metadata."""
    import onnx

    m = onnx.load(str(path))
    meta = {p.key: p.value for p in m.metadata_props}
    meta["description"] = (
        "trtseg demo model: YOLOv8n-seg trained from scratch on trtseg synthetic scenes (datasets.scenes)"
    )
    del m.metadata_props[:]
    for k, v in meta.items():
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(path))
    return meta


def _metrics(m: Any) -> dict[str, Any]:
    """Box and mask mAP (overall and per class) from an ultralytics SegmentMetrics."""
    out: dict[str, Any] = {
        "box_map50": float(m.box.map50),
        "box_map50_95": float(m.box.map),
        "mask_map50": float(m.seg.map50),
        "mask_map50_95": float(m.seg.map),
        "box_precision": float(m.box.mp),
        "box_recall": float(m.box.mr),
        "mask_precision": float(m.seg.mp),
        "mask_recall": float(m.seg.mr),
        "per_class": {},
    }
    for i, c in enumerate(m.ap_class_index):
        name = CLASS_NAMES[int(c)]
        out["per_class"][name] = {
            "box_map50": float(m.box.ap50[i]),
            "box_map50_95": float(m.box.ap[i]),
            "mask_map50": float(m.seg.ap50[i]),
            "mask_map50_95": float(m.seg.ap[i]),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="results: onnx, pt, metrics.json, images")
    ap.add_argument("--data-dir", type=Path, required=True, help="where the generated data set is written")
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--val", type=int, default=300)
    ap.add_argument("--test", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--time-min", type=float, default=0.0, help="train for this many minutes (overrides epochs)")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default="0")
    ap.add_argument("--cache", default="ram")
    ap.add_argument("--onnx-val", type=int, default=1, help="1: validate the exported ONNX on the test split too")
    ap.add_argument("--name", default="trtseg-cable-n")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(a).items()}}

    counts = {"train": a.train, "val": a.val, "test": a.test}
    data_yaml = write_yolo_dataset(a.data_dir, counts, workers=a.workers)
    report["data"] = {"counts": counts, "generate_s": round(time.perf_counter() - t0, 1)}
    log.info("data ready in %.1fs: %s", time.perf_counter() - t0, data_yaml)

    _offline_patches()
    from ultralytics import YOLO

    model = YOLO("yolov8n-seg.yaml")  # bundled architecture, random init
    train_args: dict[str, Any] = dict(
        data=str(data_yaml),
        epochs=a.epochs,
        imgsz=a.imgsz,
        batch=a.batch,
        workers=a.workers,
        device=a.device,
        cache=a.cache,
        rect=False,
        plots=False,
        amp=True,
        pretrained=False,
        project=str(a.out.resolve() / "runs"),
        name="train",
        exist_ok=True,
        seed=0,
        deterministic=False,
        patience=1000,
        close_mosaic=5,
        verbose=True,
    )
    if a.time_min > 0:
        train_args["time"] = a.time_min / 60.0
    t1 = time.perf_counter()
    model.train(**train_args)
    trainer = model.trainer
    report["train"] = {
        "args": {k: str(v) for k, v in train_args.items()},
        "train_s": round(time.perf_counter() - t1, 1),
        "epochs_run": int(trainer.epoch) + 1,
    }
    best = Path(trainer.best if Path(trainer.best).exists() else trainer.last)
    pt_path = a.out / f"{a.name}.pt"
    shutil.copy(best, pt_path)
    _scrub_checkpoint(pt_path)
    if trainer.csv.exists():
        shutil.copy(trainer.csv, a.out / "results.csv")
    log.info("trained in %.1fs, best %s", time.perf_counter() - t1, best)

    bm = YOLO(str(pt_path))
    test_pt = bm.val(
        data=str(data_yaml),
        split="test",
        imgsz=a.imgsz,
        batch=a.batch,
        device=a.device,
        plots=False,
        project=str(a.out.resolve() / "runs"),
        name="test_pt",
        exist_ok=True,
    )
    report["test_pt"] = _metrics(test_pt)
    log.info("test (pt): %s", json.dumps(report["test_pt"]))
    (a.out / "metrics.json").write_text(json.dumps(report, indent=2))

    onnx_path = Path(bm.export(format="onnx", dynamic=True, simplify=True, imgsz=a.imgsz, device="cpu"))
    if onnx_path.resolve() != (a.out / f"{a.name}.onnx").resolve():
        shutil.copy(onnx_path, a.out / f"{a.name}.onnx")
    onnx_path = a.out / f"{a.name}.onnx"
    report["onnx_metadata"] = _set_onnx_description(onnx_path)
    report["onnx_mb"] = round(onnx_path.stat().st_size / 2**20, 2)
    (a.out / "metrics.json").write_text(json.dumps(report, indent=2))
    log.info("exported %s (%.1f MB)", onnx_path, report["onnx_mb"])

    if a.onnx_val:
        om = YOLO(str(a.out / f"{a.name}.onnx"), task="segment")
        test_onnx = om.val(
            data=str(data_yaml),
            split="test",
            imgsz=a.imgsz,
            batch=1,
            device="cpu",
            plots=False,
            project=str(a.out.resolve() / "runs"),
            name="test_onnx",
            exist_ok=True,
        )
        report["test_onnx"] = _metrics(test_onnx)
        log.info("test (onnx): %s", json.dumps(report["test_onnx"]))
        import cv2

        imgs = sorted((a.data_dir / "images" / "test").glob("*.jpg"))[:4]
        for i, r in enumerate(om.predict([str(p) for p in imgs], imgsz=a.imgsz, device="cpu", verbose=False)):
            cv2.imwrite(str(a.out / f"pred_{i}.jpg"), r.plot())
    report["total_s"] = round(time.perf_counter() - t0, 1)
    (a.out / "metrics.json").write_text(json.dumps(report, indent=2))
    log.info("done in %.1fs", report["total_s"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
