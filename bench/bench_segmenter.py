"""The segmentation service at saturation against its engine alone: where a batch's host time goes.

    python bench/bench_segmenter.py --backend cuda --device cuda --precision fp16 --batch-size 32 \
        --cameras 64 --fps 25 --seconds 10 --out var/bench/segmenter.json [--profile DIR]

No Ray and no decoders: the service (``trtseg.segmentation.SegmentationService``, the body of the
segmentation actor) runs in this process as in the actor, and ``--clients`` processes act as the
cameras' decoders over the node-local channel: each camera writes 1280x720 scenes into its
shared-memory ring, sends an ``InferNote`` per frame at ``--fps`` (0: as fast as answers come) with
at most ``--in-flight`` frames waiting, and counts the answers; a frame due while every slot waits
is dropped, as a decoder's mailbox would. Before that, the engine alone is timed on the same
frames at the same batch size (``engine.predict``, from ordinary memory and, on a GPU, from
page-locked memory as the rings are). The report sets beside each other: frames/s of the service
and of the engine, the batch time inside the service against the engine's own pre / network / post
time per batch, the service process's CPU cores, answer latency, and (``--profile``) py-spy's
samples of this process read by ``bench/profile_stacks.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, batch_window, key_values, machine_info, stage_window, write_json
from bench.profile_stacks import parse, record, render, summarise

logger = logging.getLogger("bench_segmenter")


def scenes(count: int, size: tuple[int, int]) -> list[np.ndarray]:
    from datasets.scenes import SceneConfig, generate_scene

    return [generate_scene(seed, SceneConfig(size=size)).image for seed in range(count)]


def camera_loop(camera_id: str, address: str, frames: list[np.ndarray], args: dict[str, Any]) -> dict[str, Any]:
    """One camera's decoder side: paced notes into the channel, answers counted in the window."""
    from trtseg.channel import ChannelClosed, Connection, FrameSlots
    from trtseg.handoff_messages import InferNote, InferReply, RingAnnounce

    ring = FrameSlots(frames[0].shape, args["in_flight"])
    connection = Connection.connect(address)
    connection.send(RingAnnounce(ring.info), (ring.fd,))
    free = list(range(args["in_flight"]))
    sent_at: dict[int, tuple[float, int]] = {}
    lock = threading.Condition()
    figures = {"sent": 0, "answered": 0, "dropped": 0, "errors": 0}
    latencies: list[float] = []
    start, end = args["window"]

    def read() -> None:
        try:
            while True:
                message, _ = connection.recv()
                if not isinstance(message, InferReply):
                    continue
                now = time.time()
                with lock:
                    sent, slot = sent_at.pop(message.seq)
                    free.append(slot)
                    lock.notify()
                if start <= sent and now <= end:
                    figures["answered"] += 1
                    figures["errors"] += message.error is not None
                    latencies.append(1000.0 * (now - sent))
        except ChannelClosed:
            return

    threading.Thread(target=read, daemon=True).start()
    period = 1.0 / args["fps"] if args["fps"] > 0 else 0.0
    due = time.time() + period * (hash(camera_id) % 1000) / 1000.0  # cameras out of step, as in life
    seq = 0
    while time.time() < end:
        if period:
            time.sleep(max(0.0, due - time.time()))
            due += period
        with lock:
            if not free and not period:
                lock.wait_for(lambda: bool(free), timeout=1.0)
            if not free:
                figures["dropped"] += start <= time.time() <= end
                continue
            slot = free.pop()
            sent_at[seq] = (time.time(), slot)
        ring.write(slot, frames[seq % len(frames)])
        connection.send(InferNote(camera_id, seq, ring.info.ring_id, slot, 0.25, 0.7, None))
        figures["sent"] += start <= time.time() <= end
        seq += 1
    time.sleep(0.5)
    connection.close()
    ring.close()
    return {**figures, "latencies": latencies}


def client_main(cameras: list[str], address: str, args: dict[str, Any], results: Any) -> None:
    frames = scenes(args["distinct_frames"], tuple(args["size"]))
    out: dict[str, Any] = {}
    threads = [
        threading.Thread(target=lambda c=c: out.__setitem__(c, camera_loop(c, address, frames, args))) for c in cameras
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(out)


def _key(image: np.ndarray) -> bytes:
    """A sparse sample of a picture's pixels: enough to tell the rendered frames apart."""
    return np.ascontiguousarray(image[::29, ::31]).tobytes()


class ReplayEngine:
    """The real engine's answers for these frames, handed back after ``batch_ms`` of sleep (the GIL
    released, as a GPU batch leaves it): the service's own host cost per frame, whatever the engine."""

    def __init__(self, engine: Any, frames: list[np.ndarray], batch_ms: float, concurrent_batches: int) -> None:
        from engines.engine import StageTimings

        self._engine = engine
        answers = engine.predict(frames)
        self._by_key = {_key(image): answer for image, answer in zip(frames, answers, strict=True)}
        if len(self._by_key) != len(frames):
            raise ValueError("two replayed frames look alike: render distinct frames")
        self._batch_s = batch_ms / 1000.0
        self._timings = StageTimings
        self.total_timings = StageTimings()
        self.max_batch = engine.max_batch
        self.concurrent_batches = concurrent_batches
        self.backend, self.config, self.names = engine.backend, engine.config, engine.names

    def predict(self, images: list[np.ndarray], *args: Any, **kwargs: Any) -> list[Any]:
        started = time.perf_counter()
        time.sleep(self._batch_s)
        out = [self._by_key[_key(image)] for image in images]  # a ring slot holds a copy of one frame
        elapsed_ms = 1000 * (time.perf_counter() - started)
        self.total_timings.add(self._timings(infer_ms=elapsed_ms, frames=len(images), batches=1))
        return out


def engine_alone(engine: Any, frames: list[np.ndarray], batch: int, seconds: float, locker: Any) -> dict[str, Any]:
    """Frames/s of ``engine.predict`` on full batches, from ordinary and (with a locker) page-locked memory."""
    images = [frames[i % len(frames)] for i in range(batch)]
    out: dict[str, Any] = {}
    kinds = [("pageable", images)]
    if locker is not None:
        pinned = np.stack(images)
        if locker.register(pinned):
            kinds.append(("page_locked", list(pinned)))
    for kind, batch_images in kinds:
        engine.predict(batch_images)
        engine.predict(batch_images)
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            engine.predict(batch_images)
            count += 1
        elapsed = time.perf_counter() - started
        out[kind] = {"frames_per_s": round(count * batch / elapsed, 1), "batch_ms": round(1000 * elapsed / count, 2)}
    return out


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


async def serve_and_measure(args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    from engines.gpu.pipeline import load_engine
    from trtseg.config import EngineConfig
    from trtseg.segmentation import SegmentationService

    config = EngineConfig(**engine_settings(args))
    engine, locker = load_engine(config)
    frames = scenes(args.distinct_frames, args.size)
    alone = engine_alone(engine, frames, min(args.batch_size, engine.max_batch), args.engine_seconds, locker)
    logger.info("engine alone %s", alone)
    if args.replay_ms is not None:
        engine = ReplayEngine(engine, frames, args.replay_ms, args.replay_concurrency)
    service = SegmentationService(engine, config, "bench", locker)
    address = service.listen()
    start = time.time() + args.ramp + args.warmup
    end = start + args.seconds
    client_args = {
        "fps": args.fps,
        "in_flight": args.in_flight,
        "window": (start, end),
        "size": args.size,
        "distinct_frames": args.distinct_frames,
    }
    cameras = [f"cam{i:03d}" for i in range(args.cameras)]
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    clients = [
        ctx.Process(target=client_main, args=(cameras[i :: args.clients], address, client_args, results))
        for i in range(min(args.clients, args.cameras))
    ]
    for proc in clients:
        proc.start()
    me = psutil.Process()
    await asyncio.sleep(max(0.0, start - time.time()))
    stats0, cpu0, t0 = service.stats(), me.cpu_times(), time.monotonic()
    label = f"service-{args.cameras}cams{'-gil' if args.profile_gil else ''}"
    spy = start_profile(args.profile, args.seconds, label, args.profile_gil) if args.profile else None
    await asyncio.sleep(max(0.0, end - time.time()))
    stats1, cpu1, t1 = service.stats(), me.cpu_times(), time.monotonic()
    per_camera: dict[str, Any] = {}
    for _ in clients:
        per_camera.update(await asyncio.get_running_loop().run_in_executor(None, results.get, True, 120))
    for proc in clients:
        proc.join(timeout=30)
    profile = finish_profile(spy) if spy else None
    await service.close()
    wall = t1 - t0
    answered = sum(c["answered"] for c in per_camera.values())
    latencies = [x for c in per_camera.values() for x in c["latencies"]]
    batching = batch_window(stats0["batching"], stats1["batching"])
    report = {
        "cameras": args.cameras,
        "fps_per_camera": args.fps,
        "answered_per_s": round(answered / wall, 1),
        "offered_per_s": round(sum(c["sent"] + c["dropped"] for c in per_camera.values()) / wall, 1),
        "dropped_share": round(
            sum(c["dropped"] for c in per_camera.values())
            / max(1, sum(c["sent"] + c["dropped"] for c in per_camera.values())),
            4,
        ),
        "errors": sum(c["errors"] for c in per_camera.values()),
        "latency_ms": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99)},
        "batching": batching,
        "engine_in_service": stage_window(stats0["engine"], stats1["engine"]),
        "engine_alone": alone,
        "service_cores": round(((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / wall, 2),
        "profile": profile,
    }
    best_alone = max(v["frames_per_s"] for v in alone.values())
    report["share_of_engine"] = round(report["answered_per_s"] / best_alone, 3) if best_alone else None
    return report


def engine_settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "model": args.model,
        "backend": args.backend,
        "device": args.device,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "warmup_frame": (args.size[1], args.size[0]),
    }
    return {**settings, **key_values(args.engine, "--engine")}


def start_profile(directory: str, seconds: float, label: str, gil: bool) -> tuple[subprocess.Popen[bytes], Path] | None:
    out = Path(directory) / f"{label}.txt"
    proc = record(os.getpid(), seconds, out, gil)
    if proc is None:
        logger.warning("--profile asked for, but py-spy is not on PATH")
        return None
    return proc, out


def finish_profile(spy: tuple[subprocess.Popen[bytes], Path]) -> dict[str, Any] | None:
    proc, out = spy
    _, err = proc.communicate(timeout=120)
    if proc.returncode or not out.exists():
        logger.warning("py-spy failed rc=%s error=%s", proc.returncode, err.decode(errors="replace")[-300:])
        return None
    summary = summarise(parse(out.read_text(errors="replace").splitlines()), 30)
    sys.stdout.write(render(out.name, summary) + "\n")
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=16)
    parser.add_argument("--fps", type=float, default=25.0, help="per camera; 0: as fast as answers come")
    parser.add_argument("--in-flight", type=int, default=2, help="frames a camera may have waiting")
    parser.add_argument("--clients", type=int, default=4, help="processes acting as decoders")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of traffic before the window")
    parser.add_argument("--ramp", type=float, default=8.0, help="seconds for the clients to start")
    parser.add_argument("--engine-seconds", type=float, default=4.0, help="engine-alone timing per memory kind")
    parser.add_argument("--distinct-frames", type=int, default=8)
    parser.add_argument("--size", type=lambda t: tuple(int(x) for x in t.split("x")), default=(1280, 720))
    parser.add_argument("--model", default=str(ROOT / "models" / "trtseg-cable-n.onnx"))
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--engine", nargs="*", default=[], metavar="KEY=VALUE", help="EngineConfig overrides")
    parser.add_argument(
        "--replay-ms", type=float, default=None, help="replace the engine by its answers after this sleep per batch"
    )
    parser.add_argument("--replay-concurrency", type=int, default=2, help="batches the replay engine takes at once")
    parser.add_argument("--profile", default=None, help="directory for py-spy samples of this process")
    parser.add_argument("--profile-gil", action="store_true", help="sample only the thread holding the GIL")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench" / "segmenter.json"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = parse_args(argv)
    report = asyncio.run(serve_and_measure(args))
    report = {"bench": "segmenter", "command": " ".join(sys.argv), "machine": machine_info(), **report}
    write_json(Path(args.out), report)
    shown = {k: v for k, v in report.items() if k not in ("machine", "profile")}
    sys.stdout.write(json.dumps(shown, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
