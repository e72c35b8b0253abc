"""GPU benchmark: our GPU path (frames in host memory -> boxes + box-cropped masks on the host) against
Ultralytics' own ``predict(half=True)`` on the same weights, on the same GPU, in one run.

    python bench/bench_gpu.py --model models/trtseg-cable-n.onnx --pt models/trtseg-cable-n.pt \
        --batches 1 8 32 --x --out "$OUT"

Inputs are generated 1280x720 scenes (datasets.scenes; the demo model finds cables, e-bikes and
people in them), several distinct frames per batch. Each figure is the median of timed repeats
after warm-up, wall clock around the whole call (results on the host). ``--x`` adds YOLOv8x-seg,
random-init from Ultralytics' yaml, exported to ONNX here (so both sides run the same weights).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from datasets.scenes import generate_scene  # noqa: E402
from engines.gpu.pipeline import GpuSegmentationEngine  # noqa: E402
from trtseg.config import EngineConfig  # noqa: E402


def frames_for(count: int) -> list[np.ndarray]:
    """``count`` distinct 1280x720 BGR scenes (half of them mirrored copies, to save generation time)."""
    unique = [generate_scene(1000 + i).image for i in range((count + 1) // 2)]
    out = unique + [np.ascontiguousarray(f[:, ::-1]) for f in unique]
    return out[:count]


def timed(fn: Callable[[], Any], warmup: int, min_repeats: int, budget_s: float) -> list[float]:
    """Seconds per call: warm-up calls, then repeats until both ``min_repeats`` and ``budget_s`` are met."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or (time.perf_counter() - start < budget_s and len(times) < 2000):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def bench_ours(model: Path, batch: int, frames: list[np.ndarray], budget_s: float, **overrides: Any) -> dict[str, Any]:
    """Sync ``predict`` and streamed ``predict_stream``, from ordinary (pageable) and from pinned frames."""
    config = EngineConfig(model=model, backend="cuda", device="cuda", precision="fp16", batch_size=batch, **overrides)
    engine = GpuSegmentationEngine(config).load()
    ctx = engine.backend.context  # type: ignore[attr-defined]
    pinned = []
    for frame in frames:  # as a decoder writing into page-locked buffers would hand them over
        buffer = ctx.pinned_array(frame.shape, frame.dtype)
        buffer[...] = frame
        pinned.append(buffer)
    row: dict[str, Any] = {"impl": "ours", "batch": batch}
    for label, source in (("", frames), ("pinned_", pinned)):
        sets = [source[i : i + batch] for i in range(0, len(source) - batch + 1, batch)] or [source[:batch]]
        state = {"i": 0, "instances": 0, "mask_bytes": 0}

        def call(sets: list[list[np.ndarray]] = sets, state: dict[str, int] = state) -> None:
            chunk = sets[state["i"] % len(sets)]
            state["i"] += 1
            detections = engine.predict(chunk, conf=0.25, with_masks=True)
            state["instances"] = sum(len(d) for d in detections)
            state["mask_bytes"] = sum(d.masks.nbytes for d in detections if d.masks is not None)

        times = timed(call, warmup=3, min_repeats=10, budget_s=budget_s)
        engine.total_timings = type(engine.total_timings)()
        engine._post.profile.clear()  # type: ignore[attr-defined]
        for _ in range(5):
            call()
        stages = engine.total_timings.as_dict()
        post = engine._post  # type: ignore[attr-defined]
        post_profile = {k: round(v / max(stages["batches"], 1), 3) for k, v in post.profile.items()}
        post.profile.clear()
        # Streamed: batch k+1 is staged and uploaded while batch k computes (predict_stream).
        count = max(20, int(len(times) * 1.2))
        t0 = time.perf_counter()
        for _ in engine.predict_stream((sets[i % len(sets)] for i in range(count)), conf=0.25):
            pass
        stream_s = (time.perf_counter() - t0) / count
        # The same stream with post-processing not overlapping the next network (A/B of the overlap).
        engine.overlap = False
        t0 = time.perf_counter()
        for _ in engine.predict_stream((sets[i % len(sets)] for i in range(count)), conf=0.25):
            pass
        serial_s = (time.perf_counter() - t0) / count
        engine.overlap = True
        # Two threads calling predict, as the segmentation actor's batcher runs them.
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=engine.concurrent_batches) as pool:
            list(pool.map(lambda chunk: engine.predict(chunk, conf=0.25), (sets[i % len(sets)] for i in range(count))))
        callers_s = (time.perf_counter() - t0) / count
        median = statistics.median(times)
        row.update(
            {
                f"{label}ms_per_batch": median * 1e3,
                f"{label}ms_per_frame": median * 1e3 / batch,
                f"{label}fps": batch / median,
                f"{label}stream_fps": batch / stream_s,
                f"{label}stream_no_overlap_fps": batch / serial_s,
                f"{label}two_callers_fps": batch / callers_s,
                f"{label}stage_ms_per_batch": {
                    k: stages[k] / max(stages["batches"], 1) for k in ("pre_ms", "infer_ms", "post_ms")
                },
                f"{label}repeats": len(times),
                f"{label}post_host_ms_per_batch": post_profile,
                "instances_per_batch": state["instances"],
                "mask_bytes_per_batch": state["mask_bytes"],  # InstanceMasks.nbytes: crops + geometry
            }
        )
    engine.close()
    return row


def bench_ultralytics(yolo: Any, batch: int, frames: list[np.ndarray], budget_s: float) -> dict[str, Any]:
    sets = [frames[i : i + batch] for i in range(0, len(frames) - batch + 1, batch)] or [frames[:batch]]
    state = {"i": 0, "instances": 0}

    def call() -> None:
        chunk = sets[state["i"] % len(sets)]
        state["i"] += 1
        results = yolo.predict(chunk, half=True, imgsz=640, conf=0.25, device=0, verbose=False, retina_masks=False)
        count = 0
        for r in results:  # the end product on the host: boxes and masks
            r.boxes.data.cpu()
            if r.masks is not None:
                r.masks.data.cpu()
                count += len(r.boxes)
        state["instances"] = count

    times = timed(call, warmup=3, min_repeats=10, budget_s=budget_s)
    median = statistics.median(times)
    return {
        "impl": "ultralytics",
        "batch": batch,
        "ms_per_batch": median * 1e3,
        "ms_per_frame": median * 1e3 / batch,
        "fps": batch / median,
        "instances_per_batch": state["instances"],
        "repeats": len(times),
    }


def export_random_x(workdir: Path) -> tuple[Any, Path]:
    """YOLOv8x-seg with random weights (no download), and its dynamic ONNX export."""
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    yolo = YOLO("yolov8x-seg.yaml", task="segment")
    workdir.mkdir(parents=True, exist_ok=True)
    pt = workdir / "yolov8x-seg-random.pt"
    yolo.save(str(pt))
    path = YOLO(str(pt)).export(format="onnx", dynamic=True, simplify=False, imgsz=640, opset=17)
    return YOLO(str(pt), task="segment"), Path(path)


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0)


def markdown(rows: list[dict[str, Any]], device: str, command: str) -> str:
    lines = [
        f"Device: {device}. Command: `{command}`",
        "",
        "| model | batch | ours ms/frame | ours frames/s | ours streamed | ours, pinned frames | ours, pinned, "
        "streamed | ultralytics ms/frame | ultralytics frames/s | speed-up (ms/frame) "
        "| ours, pinned, streamed without overlap | ours, pinned, two callers "
        "| ours pre / infer / post ms per batch (pinned) | instances per batch (ours / ultralytics) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    by_key: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_key.setdefault((row["model"], row["batch"]), {})[row["impl"]] = row
    for (model, batch), pair in by_key.items():
        ours, ul = pair.get("ours"), pair.get("ultralytics")
        cells = [model, str(batch)]
        if ours:
            cells += [f"{ours['ms_per_frame']:.2f}"]
            cells += [f"{ours[k]:.0f}" for k in ("fps", "stream_fps", "pinned_fps", "pinned_stream_fps")]
        else:
            cells += ["-"] * 5
        cells += [f"{ul['ms_per_frame']:.2f}", f"{ul['fps']:.0f}"] if ul else ["-", "-"]
        cells.append(f"{ul['ms_per_frame'] / ours['ms_per_frame']:.1f}x" if ours and ul else "-")
        cells += (
            [f"{ours[k]:.0f}" for k in ("pinned_stream_no_overlap_fps", "pinned_two_callers_fps")]
            if ours
            else ["-"] * 2
        )
        stages = ours["pinned_stage_ms_per_batch"] if ours else None
        cells.append(" / ".join(f"{stages[k]:.2f}" for k in ("pre_ms", "infer_ms", "post_ms")) if stages else "-")
        cells.append(f"{ours['instances_per_batch'] if ours else '-'} / {ul['instances_per_batch'] if ul else '-'}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "trtseg-cable-n.onnx")
    parser.add_argument("--pt", type=Path, default=ROOT / "models" / "trtseg-cable-n.pt")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timed repeats per figure")
    parser.add_argument("--x", action="store_true", help="also YOLOv8x-seg (random init, exported here)")
    parser.add_argument("--no-ultralytics", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    device = f"{gpu_name()}, {platform.node() or 'host'}"
    frames = frames_for(2 * max(args.batches))
    print(f"device: {device}; {len(frames)} frames of {frames[0].shape}", flush=True)

    models: list[tuple[str, Path, Any]] = []
    yolo_n = None
    if not args.no_ultralytics:
        from ultralytics import YOLO

        yolo_n = YOLO(str(args.pt), task="segment")
    models.append(("trtseg-cable-n (YOLOv8n-seg)", args.model, yolo_n))
    if args.x:
        try:
            yolo_x, onnx_x = export_random_x(Path("/tmp/trtseg-bench"))
            models.append(("YOLOv8x-seg (random init)", onnx_x, yolo_x))
        except Exception:
            print("YOLOv8x-seg export failed; x skipped:\n" + traceback.format_exc(), flush=True)

    rows: list[dict[str, Any]] = []
    for name, onnx_path, yolo in models:
        for batch in args.batches:
            for impl in ("ours", "ultralytics"):
                if impl == "ultralytics" and yolo is None:
                    continue
                try:
                    if impl == "ours":
                        row = bench_ours(onnx_path, batch, frames, args.budget)
                    else:
                        row = bench_ultralytics(yolo, batch, frames, args.budget)
                except Exception:
                    print(f"{name} batch {batch} {impl} failed:\n{traceback.format_exc()}", flush=True)
                    continue
                row["model"] = name
                rows.append(row)
                print(json.dumps(row), flush=True)
                (args.out / "bench_gpu.json").write_text(json.dumps({"device": device, "rows": rows}, indent=2))
    command = "python bench/bench_gpu.py " + " ".join(sys.argv[1:])
    table = markdown(rows, device, command)
    (args.out / "bench_gpu.md").write_text(table)
    print(table, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
