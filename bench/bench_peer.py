"""The peer: the same job done the simplest way a user would without trtseg, measured like our pipeline.

    .venv-ref/bin/python bench/bench_peer.py --cameras 1 --inference-fps 5          # CPU, one camera
    .venv-ref/bin/python bench/bench_peer.py --ramp --inference-fps 5 --write
    python bench/bench_peer.py --ramp --model models/trtseg-cable-n.pt --device 0 --half --sink none

One process per camera, each a plain loop: read the next frame of its clip (OpenCV), at the rate a
live 25 fps camera delivers it; ultralytics ``YOLO(model).predict`` on it (every frame, or every
k-th for ``--inference-fps``, drawing the last result on the frames between); ``result.plot()``;
write the annotated frame into an FFmpeg x264 process (HLS files, the same encoder settings as
trtseg's pushers). A loop that is slower than the camera falls behind: the frames it has not
reached when their successors are due are the peer's drops (a live source would discard or queue
them), and the latency of a frame is from the moment the camera delivered it to its write.

Needs ultralytics (and torch): run it with a reference venv, never with trtseg's runtime. The
clips are the pipeline benchmark's (rendered by it into ``--clip-dir`` when missing).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    CLIP_FPS,
    REALTIME_DROP_LIMIT,
    REALTIME_P99_LIMIT_MS,
    ROOT,
    camera_counts,
    machine_info,
    markdown_table,
    percentile,
    plot_steps,
    write_doc_section,
    write_json,
)

logger = logging.getLogger("bench_peer")

WORKER_SLACK_S = 240.0  # model load, warm-up and encoder start on a loaded machine


# ----------------------------------------------------------------------------- one camera (worker process)
class Encoder:
    """The annotated stream: FFmpeg x264 to HLS files (``ffmpeg``), or nothing (``none``)."""

    def __init__(self, kind: str, size: tuple[int, int], fps: float, outdir: Path, preset: str) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        if kind == "none":
            return
        outdir.mkdir(parents=True, exist_ok=True)
        cmd = [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24",
            "-s", f"{size[0]}x{size[1]}", "-r", f"{fps:g}", "-i", "-", "-c:v", "libx264", "-preset", preset,
            "-tune", "zerolatency", "-threads", "2", "-b:v", "2500k", "-g", f"{round(fps)}",
            "-pix_fmt", "yuv420p", "-f", "hls", "-hls_time", "2", "-hls_list_size", "6",
            "-hls_flags", "delete_segments", str(outdir / "index.m3u8"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)

    def write(self, image: Any) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.write(image.tobytes())

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=5)


def _cpu_s(pid: int) -> float:
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    except psutil.NoSuchProcess:
        return 0.0


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One camera's plain loop; returns its figures over the measurement window."""
    import cv2
    from ultralytics import YOLO

    capture = cv2.VideoCapture(args.clip)
    ok, frame = capture.read()
    if not ok:
        raise SystemExit(f"cannot read a frame from {args.clip}")
    fps = float(capture.get(cv2.CAP_PROP_FPS) or CLIP_FPS)
    height, width = frame.shape[:2]
    model = YOLO(args.model, task="segment")
    predict = {"device": args.device, "half": args.half, "verbose": False, "conf": 0.25, "iou": 0.7}
    for _ in range(3):  # warm-up: first calls build kernels and caches
        model.predict(frame, **predict)
    encoder = Encoder(args.sink, (width, height), fps, Path(args.outdir), args.preset)
    every = max(1, round(fps / args.inference_fps)) if args.inference_fps else 1
    latencies: list[float] = []
    processed = inferred = 0
    last = None
    window_start = window_end = 0.0
    cpu0: tuple[float, float] = (0.0, 0.0)
    origin = time.monotonic()
    index = 0
    measuring = False
    first_due_index = 0
    try:
        while True:
            due = origin + index / fps
            now = time.monotonic()
            if not measuring and now >= origin + args.warmup:
                measuring, window_start = True, now
                window_end = now + args.seconds
                cpu0 = (_cpu_s(os.getpid()), _cpu_s(encoder.proc.pid) if encoder.proc else 0.0)
                first_due_index = index
            if measuring and now >= window_end:
                break
            if due > now:
                time.sleep(due - now)
            ok, frame = capture.read()
            if not ok:  # loop the clip, like trtseg's looping file sources
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = capture.read()
            if index % every == 0 or last is None:
                last = model.predict(frame, **predict)[0]
                annotated = last.plot()
                inferred += measuring
            else:
                annotated = last.plot(img=frame)
            encoder.write(annotated)
            if measuring:
                processed += 1
                latencies.append(1000.0 * (time.monotonic() - due))
            index += 1
        end = time.monotonic()
        wall = end - window_start
        cpu1 = (_cpu_s(os.getpid()), _cpu_s(encoder.proc.pid) if encoder.proc else 0.0)
    finally:
        encoder.close()
        capture.release()
    # Frames of the window whose due time had come by its end (processed or not): the camera's output.
    expected = max(math.ceil((end - origin) * fps) - first_due_index, processed, 1)
    return {
        "clip": args.clip,
        "seconds": wall,
        "frames_expected": expected,
        "frames_out": processed,
        "drop_rate": max(0.0, 1.0 - processed / expected),
        "fps_out": processed / wall,
        "inference_fps": inferred / wall,
        "latency_p50_ms": percentile(latencies, 0.50),
        "latency_p99_ms": percentile(latencies, 0.99),
        "loop_cores": (cpu1[0] - cpu0[0]) / wall,
        "encode_cores": (cpu1[1] - cpu0[1]) / wall if encoder.proc else None,
        "size": [width, height],
    }


# ----------------------------------------------------------------------------- driver
def run_step(args: argparse.Namespace, clips: list[Path], cameras: int, workdir: Path) -> dict[str, Any]:
    """``cameras`` worker processes at once; their figures and the step's summary."""
    procs = []
    for index in range(cameras):
        cmd = [
            sys.executable, str(Path(__file__).resolve()), "--worker", "--clip", str(clips[index % len(clips)]),
            "--model", args.model, "--device", args.device, "--seconds", str(args.seconds),
            "--warmup", str(args.warmup), "--sink", args.sink, "--preset", args.preset,
            "--outdir", str(workdir / f"cam{index}"),
        ]  # fmt: skip
        if args.half:
            cmd.append("--half")
        if args.inference_fps:
            cmd += ["--inference-fps", str(args.inference_fps)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    per_camera = []
    deadline = time.monotonic() + args.warmup + args.seconds + WORKER_SLACK_S
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise RuntimeError("a peer worker did not finish in time") from None
        if proc.returncode != 0:
            raise RuntimeError(f"a peer worker failed with exit status {proc.returncode}")
        per_camera.append(json.loads(out.strip().splitlines()[-1]))
    worst_drop = max(c["drop_rate"] for c in per_camera)
    worst_p99 = max(c["latency_p99_ms"] or 0.0 for c in per_camera)
    return {
        "cameras": cameras,
        "realtime": worst_drop < REALTIME_DROP_LIMIT and worst_p99 < REALTIME_P99_LIMIT_MS,
        "frames_out_per_s": sum(c["fps_out"] for c in per_camera),
        "inference_fps_total": sum(c["inference_fps"] for c in per_camera),
        "worst_drop_rate": worst_drop,
        "p50_ms_mean": sum(c["latency_p50_ms"] or 0.0 for c in per_camera) / cameras,
        "p99_ms_worst": worst_p99,
        "loop_cores_per_camera": sum(c["loop_cores"] for c in per_camera) / cameras,
        "encode_cores_per_camera": (
            None if args.sink == "none" else sum(c["encode_cores"] or 0.0 for c in per_camera) / cameras
        ),
        "per_camera": per_camera,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    clip_dir = Path(args.clip_dir)
    clips = sorted(clip_dir.glob(f"clip-{args.size}-{CLIP_FPS}-*s-seed*.mp4"))[: args.distinct_clips]
    if not clips:
        from bench.common import make_clips

        width, height = (int(x) for x in args.size.split("x"))
        clips = make_clips(clip_dir, args.distinct_clips, args.clip_seconds, (width, height))
    info = machine_info()
    steps = []
    counts = args.steps or (
        [2**k for k in range(int(math.log2(args.max_cameras)) + 1)] if args.ramp else [args.cameras]
    )
    with tempfile.TemporaryDirectory(prefix="trtseg-peer-") as tmp:
        for n in counts:
            step = run_step(args, clips, n, Path(tmp))
            step["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
            steps.append(step)
            write_json(Path(args.out).with_suffix(".partial.json"), {"steps": steps})  # survives a kill
            logger.info("peer step cameras=%d realtime=%s", n, step["realtime"])
            if args.ramp and not step["realtime"]:
                break
    versions: dict[str, str] = {}
    for module in ("ultralytics", "torch"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = "absent"
    return {
        "bench": "peer",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": info,
        "versions": versions,
        "settings": {
            "model": args.model,
            "device": args.device,
            "half": args.half,
            "inference_fps": args.inference_fps,
            "sink": args.sink,
            "preset": args.preset,
            "warmup_s": args.warmup,
            "seconds": args.seconds,
            "clips": [str(c.name) for c in clips],
        },
        "largest_realtime_cameras": max((s["cameras"] for s in steps if s["realtime"]), default=0),
        "steps": steps,
    }


def markdown(report: dict[str, Any]) -> str:
    headers = [
        "cameras",
        "real time",
        "frames out/s",
        "inferred/s",
        "worst drop %",
        "p50 ms",
        "worst p99 ms",
        "loop cores/cam (decode+predict+plot)",
        "x264 cores/cam",
    ]
    rows = [
        [
            s["cameras"],
            "yes" if s["realtime"] else "no",
            s["frames_out_per_s"],
            s["inference_fps_total"],
            100.0 * s["worst_drop_rate"],
            s["p50_ms_mean"],
            s["p99_ms_worst"],
            f"{s['loop_cores_per_camera']:.2f}",
            None if s["encode_cores_per_camera"] is None else f"{s['encode_cores_per_camera']:.2f}",
        ]
        for s in report["steps"]
    ]
    return markdown_table(headers, rows)


def _rate(inference_fps: float | None) -> str:
    return f"inference at {inference_fps:g} fps per camera" if inference_fps else "inference on every frame"


def _sink(settings: dict[str, Any]) -> str:
    if settings["sink"] == "none":
        return "no encoder (sink none)"
    return f"FFmpeg x264 {settings['preset']} to HLS files"


def doc_body(report: dict[str, Any], table: str, note: str = "", plot_path: str | None = None) -> str:
    settings, info = report["settings"], report["machine"]
    return "\n".join(
        [
            "## Peer: ultralytics predict, one process per camera"
            + (" (CPU" if settings["device"] == "cpu" else " (GPU")
            + (", every stream pushed)" if settings.get("sink") == "ffmpeg" and settings["device"] != "cpu" else ")"),
            "",
            f"Command: `{report['command']}`",
            "",
            f"Machine: {info['machine']}, {info['cores']} cores, load average {info['load_avg_1_5_15']} when the "
            f"run began ({info['started_utc']} UTC, shared machine). ultralytics {report['versions']['ultralytics']}, "
            f"torch {report['versions']['torch']}, model `{Path(settings['model']).name}` on "
            f"{'CPU' if settings['device'] == 'cpu' else 'CUDA device ' + settings['device']}"
            f"{' in FP16' if settings['half'] else ''}, {_rate(settings['inference_fps'])}, "
            f"{_sink(settings)}, warm-up {settings['warmup_s']:g} s, window {settings['seconds']:g} s.",
            "",
            table,
            "",
            f"Largest camera count meeting real time: **{report['largest_realtime_cameras']}**. {note}".rstrip(),
            *([] if plot_path is None else ["", f"![peer: throughput and latency vs cameras]({plot_path})"]),
            "",
            METHOD,
        ]
    )


METHOD = """How it is measured: one process per camera running the loop a user writes with ultralytics (read
a frame with OpenCV, `model.predict(frame)`, `result.plot()`, write the picture to FFmpeg x264 with
trtseg's encoder settings), fed at the camera's rate: frame i is due at start + i/25 s, and the loop
takes it when it gets there. Its latency is from the frame's due time to its write; a loop slower
than the camera falls further behind with every frame (latency grows without bound, as with a live
source read through a buffer), and the frames it did not reach in the window are its drops. With
`--inference-fps`, it predicts every k-th frame and draws the last result on the frames between
(`result.plot(img=frame)`), like trtseg. Same clips and model as the Pipeline rows."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=1)
    parser.add_argument("--ramp", action="store_true", help="1, 2, 4, ... cameras until real time breaks")
    parser.add_argument("--max-cameras", type=int, default=64)
    parser.add_argument(
        "--steps",
        type=camera_counts,
        default=None,
        help="camera counts to measure in turn, e.g. 8,12,16 (with --ramp: stop at the first that breaks real time)",
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--inference-fps", type=float, default=None)
    parser.add_argument("--model", default=str(ROOT / "models" / "trtseg-cable-n.onnx"))
    parser.add_argument("--device", default="cpu", help="'cpu' or a CUDA index such as '0'")
    parser.add_argument("--half", action="store_true", help="FP16 (CUDA only)")
    parser.add_argument("--sink", choices=["ffmpeg", "none"], default="ffmpeg")
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--distinct-clips", type=int, default=4)
    parser.add_argument("--clip-dir", default=str(ROOT / "var" / "bench" / "clips"))
    parser.add_argument("--out", default=str(ROOT / "var" / "bench" / "peer.json"))
    parser.add_argument("--write", action="store_true", help="write the Peer section of docs/BENCHMARKS.md")
    parser.add_argument("--from-json", default=None, help="render an existing report instead of measuring")
    parser.add_argument("--plot", default=None, help="PNG of throughput and latency vs cameras")
    parser.add_argument("--note", default="", help="a sentence added to the docs section (e.g. the GPU)")
    parser.add_argument("--doc-marker", default="bench_peer", help="docs/BENCHMARKS.md section marker")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    parser.add_argument("--outdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.half and args.device == "cpu":
        parser.error("--half needs a CUDA --device")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))  # the worker's result, read by the driver
        return 0
    report = json.loads(Path(args.from_json).read_text(encoding="utf-8")) if args.from_json else run(args)
    table = markdown(report)
    report["markdown"] = table
    if not args.from_json:
        write_json(Path(args.out), report)
    print(table)
    print(f"largest real-time camera count: {report['largest_realtime_cameras']}")
    rel = None
    if args.plot:
        settings = report["settings"]
        title = f"ultralytics loop per camera on {settings['device']}, {_rate(settings['inference_fps'])}"
        plot_steps({"peer (ultralytics loop)": report}, Path(args.plot), title)
        rel = os.path.relpath(Path(args.plot).resolve(), ROOT / "docs")
    if args.write:
        write_doc_section(args.doc_marker, doc_body(report, table, args.note, rel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
