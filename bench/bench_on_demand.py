"""Streams on demand: CPU per camera pushed always against on demand and unwatched, and first-picture times.

    .venv/bin/python bench/bench_on_demand.py --cameras 2 --inference-fps 5 --write

One local Ray head runs N cameras (generated 1280x720 25 fps clips, looping) as ``bench_pipeline``
does. The cameras first run with ``push_mode: always`` (HLS, x264) and a window measures CPU cores
of each camera's decoder actor, pusher actor and FFmpeg encoder (``bench_pipeline.measure``); then
they are switched to ``on_demand`` and, with nobody watching, the same window is measured again.
Last, through the real API (``create_app`` around the Ray control plane, driven in-process): after
each idle stop, the time from a request to the first MJPEG picture, and from a playlist GET to the
playlist (the encoder starts and the answer waits for its first segment), several times each.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bench_pipeline as pipeline
from bench.common import ROOT, machine_info, make_clips, markdown_table, write_doc_section, write_json

logger = logging.getLogger("bench_on_demand")

READY_TIMEOUT_S = 120.0
BOUNDARY = b"--trtsegframe"
MJPEG_GOAL_S = 1.0
HLS_GOAL_EXTRA_S = 2.0  # plus one segment


def _pushing(system: pipeline.LocalSystem, camera_ids: list[str]) -> list[bool]:
    import ray

    cams = ray.get([system.controller.get_camera.remote(cid) for cid in camera_ids], timeout=30)
    return [bool(c["stats"].get("output", {}).get("pushing")) for c in cams]


def _wait_idle(system: pipeline.LocalSystem, camera_ids: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(_pushing(system, camera_ids)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"on-demand encoders still running after {timeout_s:g} s")
        time.sleep(0.25)


def first_mjpeg_s(client: Any, camera_id: str) -> float:
    """Seconds from the request to the end of the first JPEG of the live view."""
    started = time.monotonic()
    received = b""
    with client.stream("GET", f"/cameras/{camera_id}/live.mjpg") as response:
        if response.status_code != 200:
            raise RuntimeError(f"live.mjpg answered {response.status_code}")
        for chunk in response.iter_bytes():
            received += chunk
            if BOUNDARY in received and b"\xff\xd9" in received:
                return time.monotonic() - started
    raise RuntimeError("the live view ended before a picture")


def first_playlist_s(client: Any, camera_id: str, give_up_s: float = 30.0) -> tuple[float, int]:
    """Seconds from the first playlist GET to the playlist (a 503 'starting' is asked again after its
    Retry-After, as a player does), and the GETs it took; the first segment is then fetched too."""
    started = time.monotonic()
    gets = 0
    while True:
        gets += 1
        answer = client.get(f"/hls/{camera_id}/index.m3u8")
        if answer.status_code != 503 or time.monotonic() - started > give_up_s:
            break
        time.sleep(float(answer.headers.get("retry-after", "1")))
    took = time.monotonic() - started
    if answer.status_code != 200 or "#EXTM3U" not in answer.text:
        raise RuntimeError(f"playlist answered {answer.status_code}: {answer.text[:200]}")
    segment = next(line for line in answer.text.splitlines() if line.endswith(".ts"))
    if client.get(f"/hls/{camera_id}/{segment}").status_code != 200:
        raise RuntimeError(f"segment {segment} not served")
    return took, gets


def cores(step: dict[str, Any]) -> dict[str, float | None]:
    """Mean cores per camera by role (the camera's own actors and encoder), their sum, and the segmenter's."""
    out = {role: step[f"{role}_cores_per_camera"] for role in ("decode", "pusher", "encode")}
    out["total"] = round(sum(v or 0.0 for v in out.values()), 3)
    out["segmenter"] = step["segmenter_cores"]
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import ray
    from fastapi.testclient import TestClient

    from deployments.api import create_app
    from deployments.control import RayControlPlane
    from trtseg.config import CameraConfig
    from trtseg.db import EventStore

    bench_args = pipeline.parse_args(
        ["--cameras", str(args.cameras), "--size", f"{args.size[0]}x{args.size[1]}", "--preset", args.preset]
        + (["--inference-fps", str(args.inference_fps)] if args.inference_fps else [])
    )
    clip_dir = Path(bench_args.clip_dir).resolve()
    clips = make_clips(clip_dir, min(args.cameras, 4), bench_args.clip_seconds, args.size)
    info = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="trtseg-ondemand-"))
    system: pipeline.LocalSystem | None = None
    try:
        system = pipeline.LocalSystem(bench_args, workdir, clip_dir)
        config = system.config
        config.pusher = config.pusher.model_copy(update={"on_demand_idle_s": args.idle_s})
        cams = [pipeline.camera_dict(i, clips[i % len(clips)], bench_args) for i in range(args.cameras)]
        ids = [c["id"] for c in cams]
        config.cameras = [CameraConfig(**cams[0])]
        system.start()
        for cam in cams[1:]:
            ray.get(system.controller.add_camera.remote(cam), timeout=READY_TIMEOUT_S)
        pipeline.wait_live(system, ids, READY_TIMEOUT_S)
        time.sleep(args.warmup)
        always = pipeline.measure(system, ids, args.seconds)
        for cid in ids:
            ray.get(system.controller.update_camera.remote(cid, {"push_mode": "on_demand"}), timeout=READY_TIMEOUT_S)
        pipeline.wait_live(system, ids, READY_TIMEOUT_S)
        time.sleep(args.warmup)
        if any(_pushing(system, ids)):
            raise RuntimeError("an unwatched on-demand camera is encoding")
        unwatched = pipeline.measure(system, ids, args.seconds)

        store = EventStore(config.sink.database_url)
        store.migrate()
        app = create_app(RayControlPlane(namespace=system.namespace, timeout_s=30.0), store, config.api,
                         pusher=config.pusher)  # fmt: skip
        mjpeg: list[float] = []
        hls: list[float] = []
        retried = 0
        with TestClient(app, raise_server_exceptions=False) as client:
            for trial in range(args.trials):
                cid = ids[trial % len(ids)]
                _wait_idle(system, ids, args.idle_s + 30)
                mjpeg.append(first_mjpeg_s(client, cid))
                _wait_idle(system, ids, args.idle_s + 30)
                took, gets = first_playlist_s(client, cid)
                hls.append(took)
                retried += gets > 1
                logger.info("trial=%d camera=%s mjpeg_s=%.3f hls_s=%.3f", trial, cid, mjpeg[-1], hls[-1])
        store.close()
    finally:
        if system is not None:
            system.close()
        shutil.rmtree(workdir, ignore_errors=True)
    segment_s = float(config.pusher.hls_segment_s)
    return {
        "bench": "on_demand",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": info,
        "settings": {
            "cameras": args.cameras,
            "size": list(args.size),
            "inference_fps": args.inference_fps,
            "preset": args.preset,
            "idle_s": args.idle_s,
            "hls_segment_s": segment_s,
            "gop_s": float(config.pusher.gop_s),
            "seconds": args.seconds,
            "trials": args.trials,
        },
        "always": {"cores_per_camera": cores(always), "worst_drop_rate": always["worst_drop_rate"]},
        "on_demand_unwatched": {
            "cores_per_camera": cores(unwatched),
            "worst_drop_rate": unwatched["worst_drop_rate"],
        },
        "first_mjpeg_s": {"p50": statistics.median(mjpeg), "max": max(mjpeg), "all": [round(x, 3) for x in mjpeg]},
        "first_playlist_s": {
            "p50": statistics.median(hls),
            "max": max(hls),
            "all": [round(x, 3) for x in hls],
            "answered_503_first": retried,
        },
        "goals": {
            "mjpeg_within_s": MJPEG_GOAL_S,
            "mjpeg_met": max(mjpeg) <= MJPEG_GOAL_S,
            "hls_within_s": HLS_GOAL_EXTRA_S + segment_s,
            "hls_met": max(hls) <= HLS_GOAL_EXTRA_S + segment_s,
        },
    }


def doc_body(report: dict[str, Any]) -> str:
    s = report["settings"]
    a, u = report["always"]["cores_per_camera"], report["on_demand_unwatched"]["cores_per_camera"]
    rows = []
    for mode, c in ((f"always (HLS, x264 {s['preset']})", a), ("on_demand, nobody watching", u)):
        figures = [c["decode"], c["pusher"], c["encode"], c["total"], c["segmenter"]]
        rows.append([mode, *(f"{value or 0.0:.3f}" for value in figures)])
    table = markdown_table(["push_mode", "decoder", "pusher", "x264", "per camera", "segmenter (all)"], rows)
    saved = 1.0 - u["total"] / a["total"] if a["total"] else 0.0
    m, h, g = report["first_mjpeg_s"], report["first_playlist_s"], report["goals"]
    machine = report["machine"]
    return f"""## Streams on demand

`{report["command"]}` on {machine["cores"]} cores ({machine["machine"]}, load at start
{machine["load_avg_1_5_15"]}, {machine["started_utc"]} UTC): {s["cameras"]} cameras of {s["size"][0]}x{s["size"][1]}
25 fps, inference {"on every frame" if not s["inference_fps"] else f"at {s['inference_fps']:g} fps"}, CPU segmenter,
{s["seconds"]:g} s windows. CPU per camera by actor, first with every stream encoded, then with the same
cameras switched to `push_mode: on_demand` and nobody watching (the segmenter is the same in both):

{table}

Unwatched, a camera costs {100 * saved:.0f} % less CPU outside inference: no x264, and the pusher
draws only inferred frames with detections (for the events' key frames); detections, tracking, rules,
incidents and clips run on every frame.

First picture after an idle stop, through the API ({s["trials"]} trials each, idle time {s["idle_s"]:g} s):
MJPEG p50 {m["p50"]:.3f} s, max {m["max"]:.3f} s (goal {g["mjpeg_within_s"]:g} s:
{"met" if g["mjpeg_met"] else "missed"});
HLS playlist (the encoder starts, the answer waits for the first {s["hls_segment_s"]:g} s segment, GOP
{s["gop_s"]:g} s) p50 {h["p50"]:.3f} s, max {h["max"]:.3f} s (goal {g["hls_within_s"]:g} s, 2 s plus one segment:
{"met" if g["hls_met"] else "missed"}; {h["answered_503_first"]} of {s["trials"]} first GETs answered 503 "starting"
and were asked again after Retry-After).
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--inference-fps", type=float, default=5.0, help="per camera; 0: every frame")
    parser.add_argument("--size", type=pipeline._size, default=(1280, 720), help="clip size WxH")
    parser.add_argument("--preset", default="veryfast", help="x264 preset while pushed")
    parser.add_argument("--idle-s", type=float, default=3.0, help="pusher.on_demand_idle_s of the run")
    parser.add_argument("--seconds", type=float, default=20.0, help="each CPU window")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds before each CPU window")
    parser.add_argument("--trials", type=int, default=5, help="first-picture measurements of each kind")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench" / "on_demand.json"), help="JSON report")
    parser.add_argument("--write", action="store_true", help="write the section of docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    args.inference_fps = args.inference_fps or None
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    report = run(args)
    write_json(Path(args.out), report)
    body = doc_body(report)
    sys.stdout.write(body)
    if args.write:
        write_doc_section("bench_on_demand", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
