"""What incident clips cost: CPU of the packet tap and ring per 720p25 camera, and a clip's first byte over HTTP.

Usage: .venv/bin/python bench/bench_clips.py [--seconds 20] [--requests 50] [--out var/bench/clips.json]

- tap, isolated: every packet of a 1280x720 25 fps H.264 clip handed to ``PacketRing.packet`` as the
  decoder does (bytes copied, timestamps kept, old GOPs evicted), on a clock that advances one frame
  per packet; thread CPU per packet, times 25 packets a second.
- tap, in place: a real ``CameraDecoder`` on the clip (looping, paced at 25 fps) for ``--seconds``
  without and then with the tap; the decode thread's CPU (psutil, per thread) in each phase. The
  difference is within the noise of decoding; the isolated figure is the cost.
- recording: the recorder thread's CPU while a clip is being written (remux, no encoding).
- first byte: ``GET /incidents/{id}/clip`` on a real uvicorn server (the route of
  ``deployments/routes_clips.py`` with a fake incident lookup), a 60 s 720p clip; time from sending
  the request to the first byte of the body, whole and with ``Range``.

Prints a markdown table; the goal of issue 19 is under 0.01 core per camera and under 1 s.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import CLIP_FPS, fmt, free_port, machine_info, make_clips, markdown_table, percentile  # noqa: E402
from bench.common import write_json as write_report  # noqa: E402

logger = logging.getLogger("bench_clips")
PASSES = 20


def tap_isolated(clip: Path) -> dict[str, float]:
    """Thread CPU of ``PacketRing.packet`` per packet over the clip's packets, ``PASSES`` times."""
    import av

    from trtseg.clips.packet_ring import PacketRing

    clock = [time.time()]
    ring = PacketRing(lookback_s=7.0, max_bytes=64 * 1024 * 1024, clock=lambda: clock[0])
    cpu = 0.0
    packets = 0
    for _ in range(PASSES):
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            ring.begin_session(stream)
            for packet in container.demux(stream):
                clock[0] += 1.0 / CLIP_FPS
                started = time.thread_time()
                ring.packet(packet)
                cpu += time.thread_time() - started
                packets += 1
    per_packet_us = 1e6 * cpu / max(packets, 1)
    stats = ring.stats()
    return {
        "packets": packets,
        "cpu_us_per_packet": round(per_packet_us, 2),
        "cores_per_camera": round(per_packet_us * CLIP_FPS / 1e6, 5),
        "ring_span_s": stats["span_s"],
        "ring_mb": round(stats["bytes"] / 1e6, 2),
    }


def _dense_clip(path: Path) -> Path:
    """The sample at a camera-like bitrate (CRF 8: several Mbit/s), so the tap copies camera-sized packets."""
    if not path.is_file():
        from datasets.video import render_sample_video

        render_sample_video(path, seconds=10.0, fps=CLIP_FPS, size=(1280, 720), seed=0, crf=8)
    return path


def _mbit_s(path: Path, seconds: float = 10.0) -> float:
    return round(8 * path.stat().st_size / seconds / 1e6, 2)


def _thread_cpu(native_id: int | None) -> float:
    import psutil

    for thread in psutil.Process().threads():
        if thread.id == native_id:
            return thread.user_time + thread.system_time
    return 0.0


def _take_frames(decoder: Any, stop: threading.Event) -> None:
    """The pipeline's side of the mailbox: take every frame, as the decoder actor does."""
    while not stop.is_set():
        decoder.latest(0.2)


def tap_in_place(clip: Path, seconds: float, clip_dir: Path) -> dict[str, Any]:
    """Decode thread CPU without and with the tap, then the recorder thread's while it writes a clip."""
    from trtseg.clips.camera import CameraClips
    from trtseg.config import CameraConfig
    from trtseg.config.clips import ClipConfig
    from trtseg.decode import CameraDecoder

    camera = CameraConfig(id="bench", source=clip.name, loop=True)
    out: dict[str, Any] = {}
    for phase in ("without_tap", "with_tap"):
        decoder = CameraDecoder(camera, file_dir=clip.parent)
        clips = None
        if phase == "with_tap":
            clips = CameraClips("bench", "bench", ClipConfig(max_clip_s=3600), clip_dir, lookback_s=7.0)
            clips.attach(decoder)
        decoder.start()
        stop = threading.Event()
        taker = threading.Thread(target=_take_frames, args=(decoder, stop))
        taker.start()
        time.sleep(2.0)  # the first GOPs, the ring filling up
        native = decoder._thread.native_id if decoder._thread else None
        cpu0, wall0 = _thread_cpu(native), time.monotonic()
        time.sleep(seconds)
        cores = (_thread_cpu(native) - cpu0) / (time.monotonic() - wall0)
        out[f"decode_thread_cores_{phase}"] = round(cores, 4)
        if clips is not None:
            recorder = clips.recorder._thread
            rec_native = recorder.native_id if recorder else None
            clips.start("bench-incident", time.time())
            cpu0, wall0 = _thread_cpu(rec_native), time.monotonic()
            time.sleep(seconds)
            out["recorder_thread_cores_while_recording"] = round(
                (_thread_cpu(rec_native) - cpu0) / (time.monotonic() - wall0), 4
            )
            clips.stop("bench-incident", time.time())
            clips.close()
            out["clip"] = clips.recorder.last_clip.to_dict() if clips.recorder.last_clip else None
        stop.set()
        decoder.stop()
        taker.join()
    out["difference_cores"] = round(out["decode_thread_cores_with_tap"] - out["decode_thread_cores_without_tap"], 4)
    return out


def long_clip(clip: Path, clip_dir: Path, seconds: float) -> tuple[str, Path]:
    """A ``seconds`` long clip remuxed from the sample (looped), as the recorder writes them; (incident, path)."""
    import av

    from trtseg.clips.layout import ClipLayout
    from trtseg.clips.packet_ring import PacketRing
    from trtseg.clips.recorder import ClipRecorder

    clock = [time.time()]
    ring = PacketRing(lookback_s=7.0, max_bytes=1 << 30, clock=lambda: clock[0])
    recorder = ClipRecorder(
        ring, clip_dir, "bench", max_clip_s=seconds, hold_s=0.0, clock=lambda: clock[0], start_thread=False
    )
    started = False
    while recorder.stats()["clips"] == 0:
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            ring.begin_session(stream)
            for packet in container.demux(stream):
                clock[0] += 1.0 / CLIP_FPS
                ring.packet(packet)
                if not started:
                    recorder.start("bench-first-byte", clock[0])
                    started = True
                recorder.step()
    info = recorder.last_clip
    assert info is not None and info.clip
    return "bench-first-byte", ClipLayout(clip_dir).resolve(info.clip)


def first_byte(clip_dir: Path, incident_id: str, requests: int, size: int) -> dict[str, Any]:
    """Time to the first body byte of GET /incidents/{id}/clip on uvicorn: whole, and two ranges."""
    import uvicorn
    from fastapi import FastAPI

    from deployments import routes_clips

    app = FastAPI()
    app.include_router(routes_clips.build_router(lambda: None, clip_dir, lookup=lambda i: {"incident_id": i}))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    results: dict[str, Any] = {}
    try:
        middle = size // 2
        for name, headers in (
            ("whole", {}),
            ("range_first_mb", {"Range": "bytes=0-1048575"}),
            ("range_middle_mb", {"Range": f"bytes={middle}-{middle + 1048575}"}),
        ):
            samples, status = [], 0
            for _ in range(requests):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                started = time.perf_counter()
                connection.request("GET", f"/incidents/{incident_id}/clip", headers=headers)
                response = connection.getresponse()
                response.read(1)
                samples.append(1000 * (time.perf_counter() - started))
                status = response.status
                response.read()
                connection.close()
            results[name] = {
                "status": status,
                "p50_ms": round(percentile(samples, 0.5) or 0.0, 2),
                "p99_ms": round(percentile(samples, 0.99) or 0.0, 2),
                "max_ms": round(max(samples), 2),
            }
    finally:
        server.should_exit = True
        thread.join(10)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="each in-place phase")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--clip-seconds", type=float, default=60.0, help="length of the served clip")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "clips.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    clip = make_clips(ROOT / "var" / "bench" / "clips", 1, 10.0)[0]
    dense = _dense_clip(ROOT / "var" / "bench" / "clips" / "clip-1280x720-25-10s-crf8.mp4")
    report: dict[str, Any] = {"machine": machine_info(), "source": clip.name}
    with tempfile.TemporaryDirectory(prefix="bench-clips-") as tmp:
        clip_dir = Path(tmp)
        report["tap_isolated"] = tap_isolated(clip)
        report["tap_isolated_dense"] = tap_isolated(dense)
        report["tap_in_place"] = tap_in_place(clip, args.seconds, clip_dir / "in_place")
        incident_id, served = long_clip(clip, clip_dir / "served", args.clip_seconds)
        report["served_clip_mb"] = round(served.stat().st_size / 1e6, 2)
        report["first_byte"] = first_byte(clip_dir / "served", incident_id, args.requests, served.stat().st_size)
    write_report(args.out, report)
    iso, place, fb = report["tap_isolated"], report["tap_in_place"], report["first_byte"]
    dense_iso = report["tap_isolated_dense"]
    rows = [
        [
            f"tap + ring, isolated ({_mbit_s(clip)} Mbit/s)",
            f"{iso['cpu_us_per_packet']} µs per packet",
            f"{iso['cores_per_camera']:.5f} core",
        ],
        [
            f"tap + ring, isolated ({_mbit_s(dense)} Mbit/s)",
            f"{dense_iso['cpu_us_per_packet']} µs per packet",
            f"{dense_iso['cores_per_camera']:.5f} core",
        ],
        [
            f"decode thread, {args.seconds:g} s in place",
            f"{place['decode_thread_cores_without_tap']:.4f} without, {place['decode_thread_cores_with_tap']:.4f} with",
            f"{place['difference_cores']:+.4f} core (noise of decoding)",
        ],
        [
            "recorder thread while writing a clip",
            "remux, no encoding",
            f"{place['recorder_thread_cores_while_recording']:.4f} core",
        ],
        ["ring held", f"{iso['ring_span_s']} s of video", f"{iso['ring_mb']} MB, {dense_iso['ring_mb']} MB dense"],
    ]
    for name, figures in fb.items():
        rows.append(
            [
                f"first byte, {name} ({report['served_clip_mb']} MB clip)",
                f"HTTP {figures['status']}, {args.requests} requests",
                ", ".join(f"{q} {fmt(figures[f'{q}_ms'], 2)} ms" for q in ("p50", "p99", "max")),
            ]
        )
    print(f"Clips on {report['machine']['cores']} cores (1280x720 25 fps H.264 with B-frames, GOP 25):\n")
    print(markdown_table(["what", "measured", "result"], rows))
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    main()
