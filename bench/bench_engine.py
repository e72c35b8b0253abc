"""CPU engine benchmark: trtseg's full path against Ultralytics ``predict`` on the same ONNX model.

Times pre-processing + inference + post-processing with masks per frame, for 1280x720 frames at
batch 1 and 8, on both sides; Ultralytics runs in a separate reference environment (it is never a
trtseg dependency) started by this script. Rounds alternate between the two sides so that load
from other processes hits both alike; the median round is reported. Prints a markdown table
(and, with --markdown-out, writes it to a file)::

    .venv/bin/python bench/bench_engine.py --model models/trtseg-cable-n.onnx \
        --ref-python .venv-ref/bin/python --rounds 3 --iters 6
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def make_frames(count: int, size: tuple[int, int] = (1280, 720)) -> list[np.ndarray]:
    """Deterministic 1280x720 frames: generated scenes where ``datasets.scenes`` exists, else noise."""
    try:
        from datasets.scenes import SceneConfig, generate_scene

        return [generate_scene(1000 + i, SceneConfig(size=size)).image for i in range(count)]
    except ImportError:
        import cv2

        rng = np.random.default_rng(0)
        return [
            cv2.resize(rng.integers(0, 256, (size[1] // 16, size[0] // 16, 3), np.uint8), size) for _ in range(count)
        ]


# trtseg variants: the default, then each lever switched back to show what it is worth.
VARIANTS: dict[str, dict[str, object]] = {
    "ours": {},
    "ours-spin": {"intra_op_spinning": True},  # ONNX Runtime's default threading, as Ultralytics uses
    "ours-square": {"imgsz": (640, 640)},  # square input, as a static 640 export forces
    "ours-closed": {"open_head": "off"},  # a fixed-size export run as exported (640x640)
}
LABELS = {
    "ours": "trtseg",
    "ours-spin": "trtseg, ORT spinning on",
    "ours-square": "trtseg, 640x640 input",
    "ours-closed": "trtseg, head not opened",
    "ultralytics": "ultralytics predict",
}


def run_ours(
    model: Path, batch: int, iters: int, conf: float, frames: list[np.ndarray], variant: str = "ours"
) -> dict[str, float]:
    from engines.engine import SegmentationEngine
    from trtseg.config import EngineConfig

    config = EngineConfig(model=model, batch_size=max(batch, 1), **VARIANTS[variant])  # type: ignore[arg-type]
    engine = SegmentationEngine(config).load()
    groups = [frames[i : i + batch] for i in range(0, len(frames), batch)]
    for group in groups[:2]:
        engine.predict(group, conf=conf)  # warm-up
    engine.total_timings = type(engine.total_timings)()
    detections = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(iters):
        for group in groups:
            detections += sum(len(d) for d in engine.predict(group, conf=conf))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    t = engine.total_timings
    n = t.frames
    return {
        "frame_ms": wall * 1e3 / n,
        "cpu_ms": cpu * 1e3 / n,
        "pre_ms": t.pre_ms / n,
        "infer_ms": t.infer_ms / n,
        "post_ms": t.post_ms / n,
        "detections_per_frame": detections / n,
        "input_shape": list(engine.last_input_shape),
    }


def run_annotate(model: Path, iters: int, conf: float, frames: list[np.ndarray]) -> dict[str, float]:
    """``trtseg.annotate.draw`` on 720p frames with the engine's detections, OpenCV on one thread."""
    import cv2

    from engines.engine import SegmentationEngine
    from trtseg.annotate import draw
    from trtseg.config import EngineConfig, PusherConfig

    engine = SegmentationEngine(EngineConfig(model=model)).load()
    detections = engine.predict(frames, conf=conf)
    cv2.setNumThreads(1)
    pusher = PusherConfig()
    draw(frames[0], detections[0], pusher, title="cam-1")
    start = time.perf_counter()
    for _ in range(iters * 10):
        for frame, dets in zip(frames, detections, strict=True):
            draw(frame, dets, pusher, title="cam-1")
    n = iters * 10 * len(frames)
    return {
        "draw_ms": (time.perf_counter() - start) * 1e3 / n,
        "detections_per_frame": sum(map(len, detections)) / len(frames),
    }


def run_ultralytics(model: Path, batch: int, iters: int, conf: float, frames: list[np.ndarray]) -> dict[str, float]:
    from ultralytics import YOLO

    yolo = YOLO(str(model), task="segment")
    groups = [frames[i : i + batch] for i in range(0, len(frames), batch)]
    for group in groups[:2]:
        yolo.predict(group, imgsz=640, conf=conf, verbose=False)
    pre = infer = post = 0.0
    detections = n = 0
    input_hw: list[int] = []
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(iters):
        for group in groups:
            results = yolo.predict(group, imgsz=640, conf=conf, verbose=False)
            for r in results:  # Ultralytics reports per-image ms for the batch
                pre, infer, post = (
                    pre + r.speed["preprocess"],
                    infer + r.speed["inference"],
                    post + r.speed["postprocess"],
                )
                detections += len(r.boxes)
                if r.masks is not None:  # masks come at the network input's size
                    input_hw = list(r.masks.data.shape[1:])
                # Conservative: Results keeps masks at the network's input size; trtseg also pays for
                # resizing them to the frame, Ultralytics is not charged for that here.
            n += len(group)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "frame_ms": wall * 1e3 / n,
        "cpu_ms": cpu * 1e3 / n,
        "pre_ms": pre / n,
        "infer_ms": infer / n,
        "post_ms": post / n,
        "detections_per_frame": detections / n,
        **({"input_shape": [batch, 3, *input_hw]} if input_hw else {}),
    }


def export_static(ref_python: str, weights: Path, out_dir: Path) -> Path:
    """A fixed-size (``dynamic=False``, 640x640) ONNX export of ``weights``, Ultralytics' default export."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{weights.stem}-static.onnx"
    if target.exists():
        return target
    staged = out_dir / weights.name
    staged.write_bytes(weights.read_bytes())
    code = "import sys; from ultralytics import YOLO; print(YOLO(sys.argv[1]).export(format='onnx', dynamic=False))"
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    proc = subprocess.run([ref_python, "-c", code, str(staged)], capture_output=True, text=True, env=env, timeout=900)
    exported = staged.with_suffix(".onnx")
    if proc.returncode != 0 or not exported.exists():
        raise RuntimeError(f"static export failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    exported.rename(target)
    staged.unlink()
    return target


def side_main(args: argparse.Namespace) -> int:
    """One measurement in this process; prints a JSON line."""
    frames = make_frames(args.frames)
    if args.side == "annotate":
        result = run_annotate(args.model, args.iters, args.conf, frames)
    elif args.side == "ultralytics":
        result = run_ultralytics(args.model, args.batch, args.iters, args.conf, frames)
    else:
        result = run_ours(args.model, args.batch, args.iters, args.conf, frames, args.side)
    print("RESULT " + json.dumps(result))
    return 0


def measure(python: str, side: str, args: argparse.Namespace, batch: int) -> dict[str, float]:
    cmd = [
        python,
        str(Path(__file__).resolve()),
        "--side",
        side,
        "--model",
        str(args.model),
        "--batch",
        str(batch),
        "--iters",
        str(args.iters),
        "--frames",
        str(args.frames),
        "--conf",
        str(args.conf),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{side} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def table(rows: list[dict[str, object]], command: str) -> str:
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"{platform.python_version()}; command: `{command}`",
        "",
        "| model | batch | side | input | wall ms/frame | CPU ms/frame | pre | infer | post (share) | det/frame "
        "| speed-up (wall) | CPU saved |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        share = 100 * row["post_ms"] / max(row["pre_ms"] + row["infer_ms"] + row["post_ms"], 1e-9)
        lines.append(
            f"| {row['model']} | {row['batch']} | {row['side']} | {row.get('input', '640x640')} | "
            f"{row['frame_ms']:.1f} | {row['cpu_ms']:.1f} | {row['pre_ms']:.1f} | {row['infer_ms']:.1f} | "
            f"{row['post_ms']:.1f} ({share:.0f}%) | {row['detections_per_frame']:.1f} | "
            f"{row.get('speedup', '')} | {row.get('cpu_ratio', '')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models/trtseg-cable-n.onnx")
    parser.add_argument("--ref-python", default=".venv-ref/bin/python", help="Python with ultralytics installed")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=3, help="passes over the frames per round")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--markdown-out", type=Path)
    parser.add_argument(
        "--export-static",
        type=Path,
        metavar="WEIGHTS",
        help="time a fixed-size 640x640 export (Ultralytics' default) of these .pt weights instead of --model; "
        "made with --ref-python into var/bench/",
    )
    parser.add_argument("--variants", default="ours,ours-spin,ours-square", help="trtseg variants to time")
    parser.add_argument("--side", choices=[*VARIANTS, "ultralytics", "annotate"], help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.model = args.model if args.model.is_absolute() else (Path.cwd() / args.model).resolve()
    if args.side:
        return side_main(args)
    if args.export_static:
        args.model = export_static(args.ref_python, args.export_static.resolve(), ROOT / "var" / "bench")

    rows: list[dict[str, object]] = []
    for batch in (int(b) for b in args.batches.split(",")):
        sides = [*args.variants.split(","), "ultralytics"]
        results: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
        for _ in range(args.rounds):
            for side in sides:
                python = args.ref_python if side == "ultralytics" else sys.executable
                results[side].append(measure(python, side, args, batch))
        medians = {}
        for side, runs in results.items():
            runs.sort(key=lambda r: r["frame_ms"])
            medians[side] = runs[len(runs) // 2]
        for side in sides:
            shape = medians[side].get("input_shape") or [0, 0, "?", "?"]
            row = {
                "model": args.model.name,
                "batch": batch,
                "side": LABELS[side],
                **medians[side],
                "input": f"{shape[2]}x{shape[3]}",
            }
            if side != "ultralytics":
                row["speedup"] = f"{medians['ultralytics']['frame_ms'] / medians[side]['frame_ms']:.2f}x"
                row["cpu_ratio"] = f"{medians['ultralytics']['cpu_ms'] / medians[side]['cpu_ms']:.2f}x"
            rows.append(row)
        print(json.dumps({"batch": batch, **{k: v for k, v in medians.items()}}), flush=True)
    annotate = measure(sys.executable, "annotate", args, 1)
    command = "python bench/bench_engine.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = table(rows, command)
    text += (
        f"\n\nAnnotation (`trtseg.annotate.draw`: masks, boxes, labels, overlay; OpenCV on 1 thread): "
        f"{annotate['draw_ms']:.2f} ms per 1280x720 frame with {annotate['detections_per_frame']:.1f} instances "
        f"({1000 / annotate['draw_ms']:.0f} fps on one core)."
    )
    print(text)
    if args.markdown_out:
        args.markdown_out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
