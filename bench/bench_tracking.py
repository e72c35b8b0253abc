"""Tracking accuracy on generated sequences: trtseg's ObjectTracker against Ultralytics' ByteTrack, same frames.

    .venv/bin/python bench/bench_tracking.py --quick                      # a short run (a few minutes, 2 cores)
    .venv/bin/python bench/bench_tracking.py                              # every scenario, dev, held-out, fresh seeds
    .venv/bin/python bench/bench_tracking.py --reuse-cache                # re-score a tracker change in seconds
    .venv/bin/python bench/bench_tracking.py --reuse-cache --tracker probation_s=0.2 high_score=0.4
    .venv/bin/python bench/bench_tracking.py --backend cuda --device cuda --precision fp16 --peer-device 0

Each sequence (``datasets.sequence_scenarios``: occlusion, cables, crossing) is rendered at 25 fps;
the demo model (``engines.SegmentationEngine``) segments every frame, and trtseg's ``ObjectTracker``
runs on all of them (25 fps) and, afresh, on every fifth (5 fps inference). The peer is Ultralytics
``YOLO(model, task="segment").track(frame, tracker="bytetrack.yaml", persist=True)`` on the same
frames and the same ONNX model, in the reference venv (``--ref-python``), through
``bench/peer_track_worker.py``. Both see detections down to the same threshold (``--conf``, 0.1:
ByteTrack's low score, so both trackers get their second stage). Both are scored by the same code
(``bench/tracking_metrics.py``): HOTA, IDF1, MOTA, ID switches; box IoU >= 0.5 for persons and
e-bikes, mask IoU >= ``--cable-iou`` for cables. Seeds: ``--seeds`` are the development seeds (the
only ones the tracker's defaults were tuned on), ``--heldout-seeds`` were checked while tuning,
``--fresh-seeds`` first looked at after tuning. The report ends with the goal check
(``bench/tracking_report.py``): no worse than the peer on HOTA and IDF1, +5 IDF1 on occlusion and cables.

Detections, truth and the peer's tracks are cached (``bench/tracking_cache.py``, ``var/bench/cache``);
``--reuse-cache`` reads them, so only trtseg's tracker and the scoring run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import tracking_cache as cache
from bench import tracking_metrics
from bench.common import ROOT, key_values, machine_info, write_json
from bench.tracking_metrics import FrameTracks, score
from bench.tracking_peer import DEFAULT_REF_PYTHON, Peer, read_peer
from bench.tracking_report import goal_check, markdown, summary
from datasets.sequence_scenarios import SCENARIOS
from datasets.sequences import FrameTruth, Sequence

logger = logging.getLogger("bench_tracking")

SEQUENCE_SECONDS = {"occlusion": 10.0, "cables": 10.0, "crossing": 20.0}


def build_sequence(scenario: str, seed: int, seconds: float, size: tuple[int, int]) -> Sequence:
    return SCENARIOS[scenario](seed, seconds=seconds, size=size)


def tracker_config(overrides: list[str] | None = None) -> Any:
    """trtseg's TrackerConfig: the defaults, with ``key=value`` overrides (validated as a config file is)."""
    from trtseg.config.analytics import TrackerConfig

    return TrackerConfig(**key_values(overrides, "--tracker"))


class Resources:
    """The engine and the peer worker, started only when a sequence needs them (not when all is cached)."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir
        self._engine: Any = None
        self._peer: Peer | None = None

    def engine(self) -> Any:
        if self._engine is None:
            from engines.engine import SegmentationEngine
            from trtseg.config import EngineConfig

            a = self.args
            config = EngineConfig(model=a.model, backend=a.backend, device=a.device, precision=a.precision)
            self._engine = SegmentationEngine(config).load()
        return self._engine

    def peer(self) -> Peer:
        if self._peer is None:
            self._peer = Peer(self.args.ref_python, self.args.model, self.workdir)
        return self._peer

    def close(self) -> None:
        if self._peer is not None:
            self._peer.close()


def peer_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"conf": args.conf, "imgsz": args.imgsz, "device": args.peer_device, "half": args.peer_half}


def sequence_key(scenario: str, seq: Sequence, args: argparse.Namespace) -> str:
    return cache.sequence_key(
        scenario, seq.seed, seq.seconds, seq.size, args.model, args.conf, args.backend, args.device, args.precision
    )


def detect(
    seq: Sequence, key: str, res: Resources, args: argparse.Namespace
) -> tuple[cache.SequenceCache, dict[float, Path], dict[str, float]]:
    """Every needed frame's detections and truth (from the cache where allowed), and the peer's tracks files.

    Frames are rendered only when something is missing: detections (segmented now and cached) or a
    rate's peer tracks (the frames go to the peer, its output is cached).
    """
    directory = Path(args.cache_dir)
    store = cache.SequenceCache(key, directory)
    if args.reuse_cache:
        store.load()
    rates = {fps: list(seq.indices(fps)) for fps in args.fps}
    needed = sorted({i for idx in rates.values() for i in idx})
    missing = set(store.missing(needed) if args.reuse_cache else needed)
    settings = peer_settings(args)
    peer_files: dict[float, Path] = {}
    peer_due: list[float] = []
    if not args.no_peer:
        for fps in args.fps:
            path = cache.peer_path(cache.peer_key(key, fps, settings), directory)
            if args.reuse_cache and path.exists():
                peer_files[fps] = path
            else:
                peer_due.append(fps)
    timing = {"infer": 0.0, "peer": 0.0}
    render = sorted(missing | {i for fps in peer_due for i in rates[fps]})
    if not render:
        return store, peer_files, timing
    streamed = peer_due[0] if peer_due else None  # this rate's frames go to the peer as they are rendered
    kept: dict[float, list[Any]] = {fps: [] for fps in peer_due[1:]}
    out_files: dict[float, Path] = {}
    if streamed is not None:
        out_files[streamed] = res.peer().start(f"{seq.name}-{streamed:g}", seq.size, len(rates[streamed]), settings)
    wanted = {fps: set(idx) for fps, idx in rates.items()}
    for i in render:
        image, truth = seq.render(i)
        if i in missing:
            started = time.perf_counter()
            det = res.engine().predict(image, conf=args.conf, iou=0.7)[0]
            timing["infer"] += time.perf_counter() - started
            store.put(i, det, truth)
        if streamed is not None and i in wanted[streamed]:
            res.peer().send(image)
        for fps, images in kept.items():
            if i in wanted[fps]:
                images.append(image)
    store.save()
    for fps, images in kept.items():
        out_files[fps] = res.peer().start(f"{seq.name}-{fps:g}", seq.size, len(images), settings)
        for image in images:
            res.peer().send(image)
    for fps, path in out_files.items():
        timing["peer"] += res.peer().wait(f"{seq.name}-{fps:g}")
        peer_files[fps] = cache.keep_peer(path, cache.peer_key(key, fps, settings), directory)
    return store, peer_files, timing


def track(frames: list[tuple[Any, FrameTruth]], config: Any) -> tuple[list[FrameTracks], float]:
    """trtseg's tracker over one rate's frames: its per-frame output and its seconds."""
    from trtseg.analytics.tracking import ObjectTracker

    tracker = ObjectTracker(config)
    out, spent = [], 0.0
    for det, truth in frames:
        started = time.perf_counter()
        result = tracker.update(det, truth.t)
        spent += time.perf_counter() - started
        out.append(FrameTracks.from_detections(result))
    return out, spent


def run_sequence(scenario: str, seq: Sequence, res: Resources, args: argparse.Namespace, config: Any) -> dict[str, Any]:
    """Detect (or read back) every frame once, track at each rate (ours and the peer's), score all."""
    key = sequence_key(scenario, seq, args)
    store, peer_files, timing = detect(seq, key, res, args)
    decoded: dict[int, tuple[Any, FrameTruth]] = {}
    results: dict[str, Any] = {"sequence": seq.describe(), "cache": key, "rates": {}}
    track_s = 0.0
    for fps in args.fps:
        frames = [decoded.setdefault(i, store.get(i)) for i in seq.indices(fps)]
        truths = [truth for _, truth in frames]
        ours, spent = track(frames, config)
        track_s += spent
        row: dict[str, Any] = {"ours": score(truths, ours, args.cable_iou)}
        if fps in peer_files:
            row["peer"] = score(truths, read_peer(peer_files[fps]), args.cable_iou)
        results["rates"][f"{fps:g}"] = row
    results["ours_seconds"] = {"infer": round(timing["infer"], 2), "track": round(track_s, 3)}
    if timing["peer"]:
        results["peer_seconds"] = round(timing["peer"], 2)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="6 s sequences, one dev and one held-out seed")
    parser.add_argument("--scenarios", default="occlusion,cables,crossing")
    parser.add_argument("--seeds", default="0,1,2,3", help="development seeds (the only ones tuned on)")
    parser.add_argument("--heldout-seeds", default="7001,7002", help="seeds checked while tuning, never tuned on")
    parser.add_argument("--fresh-seeds", default="7003,7004", help="seeds first looked at after tuning")
    parser.add_argument("--seconds", type=float, default=None, help="length of every sequence (default per scenario)")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=float, nargs="+", default=[25.0, 5.0], help="inference rates")
    parser.add_argument("--model", default=str(ROOT / "models" / "trtseg-cable-n.onnx"))
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--conf", type=float, default=0.1, help="detection threshold, both sides (ByteTrack's 0.1)")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--cable-iou", type=float, default=0.3, help="mask IoU that matches a cable")
    parser.add_argument("--ref-python", default=str(DEFAULT_REF_PYTHON))
    parser.add_argument("--peer-device", default="cpu", help="'cpu' or a CUDA index such as '0'")
    parser.add_argument("--peer-half", action="store_true")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--tracker", nargs="*", default=[], metavar="KEY=VALUE", help="TrackerConfig overrides")
    parser.add_argument("--reuse-cache", action="store_true", help="read cached detections, truth and peer tracks")
    parser.add_argument("--cache-dir", default=str(cache.CACHE_DIR))
    parser.add_argument("--out", default=str(ROOT / "var" / "bench" / "tracking.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = args.seconds or 6.0
        args.seeds = args.seeds.split(",")[0]
        args.heldout_seeds = args.heldout_seeds.split(",")[0]
        args.fresh_seeds = ""
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, int, str]]:
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    out = []
    for split, seeds in (("dev", args.seeds), ("held-out", args.heldout_seeds), ("fresh", args.fresh_seeds)):
        out += [(s, int(seed), split) for s in scenarios for seed in seeds.split(",") if seed.strip()]
    return out


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    config = tracker_config(args.tracker)
    started = time.monotonic()
    report: dict[str, Any] = {
        "command": " ".join(["bench/bench_tracking.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "tracker": config.model_dump(),
        "matching": f"box IoU >= {tracking_metrics.MATCH_IOU} (persons, e-bikes), mask IoU >= {args.cable_iou} "
        "(cables)",
        "sequences": [],
    }
    with tempfile.TemporaryDirectory(prefix="trtseg-track-") as tmp:
        res = Resources(args, Path(tmp))
        try:
            for scenario, seed, split in plan(args):
                seconds = args.seconds or SEQUENCE_SECONDS.get(scenario, 10.0)
                seq = build_sequence(scenario, seed, seconds, size)  # type: ignore[arg-type]
                t0 = time.monotonic()
                item = run_sequence(scenario, seq, res, args, config)
                item["split"] = split
                report["sequences"].append(item)
                logger.info("sequence done name=%s seconds=%.1f", seq.name, time.monotonic() - t0)
                write_json(Path(args.out).with_suffix(".partial.json"), report)
        finally:
            res.close()
    report["wall_s"] = round(time.monotonic() - started, 1)
    report["markdown"] = markdown(report)
    report["goal"] = goal_check(report)
    write_json(Path(args.out), report)
    print(report["markdown"])
    print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
