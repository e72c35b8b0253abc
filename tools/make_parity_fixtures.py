"""Make the parity fixtures: Ultralytics' own predictions on an ONNX model, saved for the tests.

Runs in a reference environment that has ultralytics (never a trtseg dependency), e.g.::

    .venv-ref/bin/python tools/make_parity_fixtures.py --model models/trtseg-cable-n.onnx

For every fixture image (Ultralytics' bus.jpg and zidane.jpg, plus generated scenes from
``datasets.scenes``) it runs ``YOLO(model, task="segment").predict`` and stores boxes, classes,
scores and masks at the image's size (``scale_masks`` of Ultralytics' ``process_mask`` output, as
its plotting does) in ``<image>.npz``; ``manifest.json`` records the model's SHA-256, thresholds
and versions. tests/engines/test_parity.py compares trtseg's engine against these.

``--random-model PATH`` first exports a random-init YOLOv8n-seg (3 classes, BatchNorm statistics
calibrated on the two sample images so outputs are not constant) for use before a trained model exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CLASS_NAMES = {0: "charging_cable", 1: "e_bike", 2: "person"}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_random_model(path: Path, seed: int = 0) -> Path:
    """Random-init YOLOv8n-seg export with varied outputs (for fixtures before training lands)."""
    import tempfile

    import torch
    from ultralytics import YOLO
    from ultralytics.utils import ASSETS

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        cfg_src = Path(sys.modules["ultralytics"].__file__).parent / "cfg/models/v8/yolov8-seg.yaml"
        cfg = Path(tmp) / "yolov8n-seg.yaml"  # the 'n' in the name selects the scale
        cfg.write_text(cfg_src.read_text().replace("nc: 80", f"nc: {len(CLASS_NAMES)}"))
        model = YOLO(str(cfg))
        model.model.names = dict(CLASS_NAMES)
        for seq in model.model.model[-1].cv3:  # class branches: spread the scores
            torch.nn.init.normal_(seq[-1].weight, std=0.1)
            torch.nn.init.constant_(seq[-1].bias, -6.0)
        ims = [cv2.resize(cv2.imread(str(ASSETS / n)), (640, 640)) for n in ("bus.jpg", "zidane.jpg")]
        x = torch.from_numpy(np.stack(ims)[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255
        for mod in model.model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.momentum = 1.0
        model.model.train()
        with torch.no_grad():
            model.model(x)
        model.model.eval()
        exported = Path(model.export(format="onnx", imgsz=640, dynamic=True, simplify=True, opset=17))
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(exported), path)
    return path


def fixture_images(out: Path, scenes: int) -> list[Path]:
    """Copy Ultralytics' sample images and render generated scenes into ``out``."""
    from ultralytics.utils import ASSETS

    images = []
    for name in ("bus.jpg", "zidane.jpg"):
        shutil.copyfile(ASSETS / name, out / name)
        images.append(out / name)
    if scenes:
        sys.path.insert(0, str(ROOT))
        from datasets.scenes import generate_scene

        for seed in range(1000, 1000 + scenes):
            image = generate_scene(seed).image
            path = out / f"scene_{seed}.jpg"
            cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            images.append(path)
    return images


def auto_conf(model, image: np.ndarray, iou: float, imgsz: int, want: tuple[int, int] = (8, 30)) -> float:
    """A threshold giving ``want`` detections, in the widest score gap (robust to tiny score drift).

    Greedy NMS never lets a lower score suppress a higher one, so the detections above any threshold
    are a prefix of the low-threshold result; a threshold in a wide gap is stable against the ~1e-5
    score differences between runtimes. Used for random-init models, whose scores vary per image.
    """
    result = model.predict(image, conf=0.001, iou=iou, imgsz=imgsz, verbose=False)[0]
    scores = np.sort(result.boxes.conf.cpu().numpy())[::-1]
    low, high = want
    if scores.size <= low:
        return 0.001
    best, best_gap = 0.001, -1.0
    for k in range(low, min(high, scores.size - 1) + 1):
        gap = float(scores[k - 1] - scores[k])
        if gap > best_gap:
            best, best_gap = float(scores[k] + scores[k - 1]) / 2, gap
    return round(best, 6)


def predict_fixture(model, image_path: Path, conf: float | None, iou: float, imgsz: int) -> dict[str, np.ndarray]:
    """Ultralytics' prediction for one image, masks scaled to the image as its plotting does."""
    from ultralytics.utils import ops

    image = cv2.imread(str(image_path))
    if conf is None:
        conf = auto_conf(model, image, iou, imgsz)
    result = model.predict(image, conf=conf, iou=iou, imgsz=imgsz, retina_masks=False, verbose=False)[0]
    boxes = result.boxes.xyxy.cpu().numpy().astype(np.float32)
    if result.masks is not None:
        masks = ops.scale_masks(result.masks.data[None].float(), result.orig_shape)[0] > 0.5
        masks = masks.cpu().numpy()
    else:
        masks = np.zeros((0, *image.shape[:2]), bool)
    return {
        "conf": np.float32(conf),
        "boxes": boxes,
        "scores": result.boxes.conf.cpu().numpy().astype(np.float32),
        "classes": result.boxes.cls.cpu().numpy().astype(np.int32),
        "mask_shape": np.array(masks.shape, np.int64),
        "masks_packed": np.packbits(masks.reshape(-1)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/trtseg-cable-n.onnx"))
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/parity"))
    parser.add_argument(
        "--conf", default="0.25", help="confidence threshold, or 'auto' for one per image giving 8-30 detections"
    )
    parser.add_argument("--iou", type=float, default=0.7)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--scenes", type=int, default=3, help="generated scenes to add (datasets.scenes)")
    parser.add_argument("--random-model", action="store_true", help="export a random-init model to --model first")
    args = parser.parse_args(argv)

    import onnxruntime
    import torch
    import ultralytics
    from ultralytics import YOLO

    model_path = args.model if args.model.is_absolute() else ROOT / args.model
    out = args.out if args.out.is_absolute() else ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.random_model:
        export_random_model(model_path)
    model = YOLO(str(model_path), task="segment")
    manifest: dict[str, object] = {
        "model": model_path.relative_to(ROOT).as_posix() if model_path.is_relative_to(ROOT) else str(model_path),
        "model_sha256": sha256(model_path),
        "conf": args.conf,
        "iou": args.iou,
        "imgsz": args.imgsz,
        "versions": {
            "ultralytics": ultralytics.__version__,
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "opencv": cv2.__version__,
        },
        "images": {},
    }
    for image_path in fixture_images(out, args.scenes):
        conf = None if args.conf == "auto" else float(args.conf)
        fixture = predict_fixture(model, image_path, conf, args.iou, args.imgsz)
        np.savez_compressed(out / f"{image_path.stem}.npz", **fixture)
        manifest["images"][image_path.name] = {  # type: ignore[index]
            "fixture": f"{image_path.stem}.npz",
            "conf": float(fixture["conf"]),
            "detections": len(fixture["scores"]),
            "classes": sorted({CLASS_NAMES.get(int(c), str(int(c))) for c in fixture["classes"]}),
        }
        print(f"{image_path.name}: {len(fixture['scores'])} detections at conf {float(fixture['conf']):.4f}")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {out / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
