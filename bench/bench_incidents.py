"""Incident correctness on generated sequences whose truth is known: precision, recall, duplicates.

    .venv/bin/python bench/bench_incidents.py --quick                  # a short run (a few minutes, 2 cores)
    .venv/bin/python bench/bench_incidents.py                          # every case, a 10-minute sequence
    .venv/bin/python bench/bench_incidents.py --backend cuda --device cuda --precision fp16   # the GPU path
    .venv/bin/python bench/bench_incidents.py --reuse-cache --only crossing long --crossing-seeds 0,1,2,3
    .venv/bin/python bench/bench_incidents.py --reuse-cache --tracker duplicate_track_iou=1.0   # a tracker change

Sequences (``datasets.sequence_scenarios``): a cable x % outside ``building_safe_zone`` for each x
of ``--outside`` (rules: ``cable_danger`` at least 40 % outside, an alert; ``cable_inside`` at least
80 % inside), a person waiting T s in ``waiting_area`` for each T of ``--dwell`` (rule ``dwell``:
3 s with at least half the mask inside), people crossing ``door_line`` both ways (``cross_lr``,
``cross_rl``), and a ``--long-seconds`` sequence with all of it and many occlusions. Each frame
inferred at ``--fps`` goes through the demo model (``engines.gpu.pipeline.create_engine``: the GPU
pipeline for GPU backends) and ``trtseg.analytics.camera.CameraAnalytics``; the incidents it reports
are matched to those the truth implies (``bench/incident_metrics.py``). Each frame's detections and
truth are cached (``bench/tracking_cache.py``, keyed by sequence, seed, model, threshold and backend),
so ``--reuse-cache`` re-scores a tracker or rule change in seconds; ``bench/incident_why.py`` then
tells, frame by frame, why a case was missed, false or doubled.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import tracking_cache as cache
from bench.bench_tracking import tracker_config
from bench.common import ROOT, machine_info, markdown_table, write_json
from bench.incident_metrics import Score, followed, match, reported_from_records, track_log
from bench.tracking_metrics import FrameTracks
from datasets import sequence_scenarios as scenarios
from datasets.scenes import CLASS_NAMES
from datasets.sequence_truth import true_incidents
from datasets.sequences import Sequence, TruthRule

logger = logging.getLogger("bench_incidents")

EPOCH = 1_800_000_000.0  # capture time of every sequence's first frame


class RecordingTracker:
    """Wraps the camera's tracker to keep what it reported in the last frame (to tell which object it followed)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.last: Any = None

    def update(self, detections: Any, now_s: float) -> Any:
        self.last = self.inner.update(detections, now_s)
        return self.last

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


PRESENCE_INERTIA_S = 1.0
GROUPS = ("fraction", "dwell", "crossing", "long")


def camera_config(seq: Sequence, fps: float, conf: float, tracker: list[str] | None = None) -> Any:
    """A camera with the sequence's zones, lines and rules, in trtseg's configuration."""
    from trtseg.config.analytics import (
        AnalyticsConfig,
        CrossingRule,
        DwellRule,
        LineConfig,
        PresenceRule,
        ZoneConfig,
    )
    from trtseg.config.camera import CameraConfig

    def rule(r: TruthRule) -> Any:
        common = {"name": r.name, "classes": [CLASS_NAMES[r.class_id]], "close_after_s": r.close_after_s}
        if r.kind == "presence":
            severity = "alert" if r.min_outside is not None else "detection"
            return PresenceRule(
                **common,
                zone=r.zone,
                membership="mask_fraction",
                min_inside=r.min_inside,
                min_outside=r.min_outside,
                severity=severity,
                # the inertia the demo ships (conf/demo.yaml): a phantom seen for a frame raises nothing
                min_duration_s=max(r.min_duration_s, PRESENCE_INERTIA_S),
            )
        if r.kind == "dwell":
            return DwellRule(
                **common, zone=r.zone, membership="mask_fraction", min_inside=r.min_inside, min_dwell_s=r.min_duration_s
            )
        return CrossingRule(**common, line=r.line, direction=r.direction, anchor="bottom_center")

    analytics = AnalyticsConfig(
        zones=[ZoneConfig(name=n, points=p) for n, p in seq.zones.items()],
        lines=[LineConfig(name=n, points=p) for n, p in seq.lines.items()],
        rules=[rule(r) for r in seq.rules],
        tracker=tracker_config(tracker or []),
    )
    return CameraConfig(
        id="bench",
        source="file:///bench/sequence.mp4",
        classes=list(CLASS_NAMES),
        inference_fps=fps,
        confidence=conf,
        analytics=analytics,
    )


class Detector:
    """The demo model, loaded only when a frame is not in the cache (``--reuse-cache`` re-scores in seconds)."""

    def __init__(self, args: argparse.Namespace, engine: Any = None) -> None:
        self.args = args
        self._engine: Any = engine  # given: a stand-in (tests); else the demo model, loaded when first needed

    def engine(self) -> Any:
        if self._engine is None:
            from engines.gpu.pipeline import create_engine  # what the segmentation actors use: GPU pipeline on cuda
            from trtseg.config import EngineConfig

            a = self.args
            config = EngineConfig(model=a.model, backend=a.backend, device=a.device, precision=a.precision)
            self._engine = create_engine(config).load()
            if dict(self._engine.names) != dict(enumerate(CLASS_NAMES)):
                raise SystemExit(f"the model's classes {self._engine.names} are not the sequences' {CLASS_NAMES}")
        return self._engine

    def store(self, seq: Sequence) -> cache.SequenceCache | None:
        """The sequence's cached frames (detections at the camera's confidence, and truth); None: no cache."""
        a = self.args
        if a.cache_dir is None:
            return None
        key = cache.sequence_key(
            seq.name, seq.seed, seq.seconds, seq.size, a.model, a.conf, a.backend, a.device, a.precision
        )
        store = cache.SequenceCache(key, Path(a.cache_dir))
        return store.load() if a.reuse_cache else store


def frames(seq: Sequence, detector: Detector, args: argparse.Namespace) -> Iterator[tuple[Any, Any, Any, float]]:
    """(image or None, detections, truth, inference seconds) of each frame inferred at ``--fps``."""
    store = detector.store(seq)
    try:
        for i in seq.indices(args.fps):
            if store is not None and i in store.frames:
                det, truth = store.get(i)
                yield None, det, truth, 0.0
                continue
            image, truth = seq.render(i)
            started = time.perf_counter()
            det = detector.engine().predict(image, conf=args.conf, iou=args.iou)[0]
            spent = time.perf_counter() - started
            if store is not None:
                store.put(i, det, truth)
            yield image, det, truth, spent
    finally:
        if store is not None:
            store.save()


def run_sequence(seq: Sequence, detector: Detector, args: argparse.Namespace) -> dict[str, Any]:
    """Infer the sequence at ``--fps``, feed CameraAnalytics, match its incidents to the truth."""
    from trtseg.analytics.camera import CameraAnalytics
    from trtseg.frames import Frame

    camera = camera_config(seq, args.fps, args.conf, args.tracker)
    if abs(camera.iou - args.iou) > 1e-9:
        raise SystemExit(f"--iou {args.iou} differs from the camera's default {camera.iou}")
    analytics = CameraAnalytics(camera, dict(enumerate(CLASS_NAMES)))
    recorder = RecordingTracker(analytics.tracker)
    analytics.tracker = recorder
    records: list[Any] = []
    truths, outputs = [], []
    infer_s = analytics_s = 0.0
    blank: np.ndarray | None = None
    for image, det, truth, spent in frames(seq, detector, args):
        if image is None:  # from the cache: key frames are drawn on a blank picture of the right size
            if blank is None:
                blank = np.zeros((*det.frame_shape[:2], 3), np.uint8)
            image = blank
        middle = time.perf_counter()
        records += analytics.update(Frame("bench", truth.index, EPOCH + truth.t, image, pts_s=truth.t), det)
        analytics_s += time.perf_counter() - middle
        infer_s += spent
        truths.append(truth)
        outputs.append(FrameTracks.from_detections(recorder.last))
    records += analytics.close_all(EPOCH + seq.seconds)
    truth_incidents = true_incidents(seq, truths)
    reported = reported_from_records(records, EPOCH)
    log = track_log(truths, outputs, args.cable_iou)
    score = match(reported, truth_incidents, seq.rules, log, truths)
    return {
        "sequence": seq.describe(),
        "true": len(truth_incidents),
        "reported": len(reported),
        "score": score,
        "counts": score.counts(),
        "duplicates": score.duplicates,
        "seconds": {"infer": round(infer_s, 2), "analytics": round(analytics_s, 3), "frames": len(truths)},
        "misses": [_describe(o) for o in score.outcomes if o.kind == "fn"],
        "false_positives": [_describe(o) for o in score.outcomes if o.kind == "fp"],
        "incidents": [_reported(rep, log) for rep in sorted(reported, key=lambda r: r.open_s)],
        "true_incidents": [
            {"rule": t.rule, "object": t.track_id, "open_s": round(t.open_s, 2), "close_s": round(t.close_s, 2)}
            for t in truth_incidents
        ],
    }


def _reported(rep: Any, log: dict[int, list[tuple[float, int | None]]]) -> dict[str, Any]:
    obj, share = followed(log, rep)
    return {
        "rule": rep.rule,
        "track": rep.track_id,
        "object": obj,
        "follow_share": round(share, 2),
        "open_s": round(rep.open_s, 2),
        "last_s": round(rep.last_s, 2),
        "closed": rep.closed,
        "severity": rep.severity,
    }


def _describe(outcome: Any) -> dict[str, Any]:
    item = outcome.truth or outcome.reported
    return {
        "rule": outcome.rule,
        "object": outcome.truth_object,
        "open_s": round(item.open_s, 2),
        "fraction": None if outcome.fraction is None else round(outcome.fraction, 3),
        "near_threshold": outcome.near,
        "follow_share": round(outcome.share, 2),
    }


def plan(args: argparse.Namespace, size: tuple[int, int]) -> list[tuple[str, Any]]:
    """(group, builder) of every sequence of the run; builders are called one at a time."""
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    crossing_seeds = seeds if args.crossing_seeds is None else [int(s) for s in args.crossing_seeds.split(",")]
    only = set(args.only)
    out: list[tuple[str, Any]] = []
    for seed in seeds:
        if "fraction" in only:
            for pct in args.outside:
                out.append(("fraction", lambda s=seed, p=pct: scenarios.fraction(s, p / 100.0, size=size)))
        if "dwell" in only:
            for dwell_s in args.dwell:
                out.append(("dwell", lambda s=seed, d=dwell_s: scenarios.dwell(s, d, size=size)))
    if "crossing" in only:
        for seed in crossing_seeds:
            out.append(("crossing", lambda s=seed: scenarios.crossing(s, size=size)))
    if args.long_seconds > 0 and "long" in only:
        out.append(("long", lambda: scenarios.long(seeds[0], seconds=args.long_seconds, size=size)))
    return out


def markdown(groups: dict[str, Score]) -> str:
    headers = ["sequences", "cases", "true", "TP", "FP", "FN", "TN", "precision", "recall", "duplicates"]
    rows = []
    for name, score in groups.items():
        for label, near in (("all", None), ("clear of thresholds", False), ("within 5 points", True)):
            c = score.counts(near)
            if near is not None and c["tp"] + c["fp"] + c["fn"] + c["tn"] == 0:
                continue
            rows.append(
                [
                    name,
                    label,
                    c["tp"] + c["fn"],
                    c["tp"],
                    c["fp"],
                    c["fn"],
                    c["tn"],
                    _pct(c["precision"]),
                    _pct(c["recall"]),
                    score.duplicates if near is None else "",
                ]
            )
    return markdown_table(headers, rows)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer cases, a 2-minute long sequence")
    parser.add_argument("--seeds", default="0,7001", help="one set of sequences per seed")
    parser.add_argument("--outside", type=float, nargs="+", default=[float(x) for x in range(0, 101, 5)])
    parser.add_argument("--dwell", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0, 6.0, 10.0])
    parser.add_argument("--long-seconds", type=float, default=600.0)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=float, default=5.0, help="inference rate (the demo's 5)")
    parser.add_argument("--model", default=str(ROOT / "models" / "trtseg-cable-n.onnx"))
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--conf", type=float, default=0.25, help="the camera's confidence (trtseg's default)")
    parser.add_argument("--iou", type=float, default=0.7, help="NMS IoU (the camera's default)")
    parser.add_argument(
        "--only", nargs="+", choices=GROUPS, default=list(GROUPS), help="run only these sequence groups"
    )
    parser.add_argument(
        "--crossing-seeds", default=None, help="seeds of the crossing sequences (default: --seeds), e.g. 0,1,2,3"
    )
    parser.add_argument("--tracker", nargs="*", default=[], metavar="KEY=VALUE", help="TrackerConfig overrides")
    parser.add_argument("--reuse-cache", action="store_true", help="read detections and truth cached by earlier runs")
    parser.add_argument("--cache-dir", default=str(cache.CACHE_DIR))
    parser.add_argument("--cable-iou", type=float, default=0.3, help="mask IoU that matches a cable")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench" / "incidents.json"))
    parser.add_argument("--verbose", action="store_true", help="log every incident as trtseg does")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds = args.seeds.split(",")[0]
        args.outside = [float(x) for x in range(0, 101, 10)]
        args.dwell = [0.0, 2.0, 6.0]
        args.long_seconds = min(args.long_seconds, 120.0)
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = parse_args(argv)
    if not args.verbose:
        logging.getLogger("trtseg").setLevel(logging.WARNING)
    detector = Detector(args)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    started = time.monotonic()
    groups: dict[str, Score] = {}
    items = []
    for group, build in plan(args, size):  # type: ignore[arg-type]
        seq = build()
        item = run_sequence(seq, detector, args)
        item["group"] = group
        groups.setdefault(group, Score()).extend(item.pop("score"))
        items.append(item)
        logger.info(
            "sequence done name=%s true=%d reported=%d counts=%s duplicates=%d",
            seq.name,
            item["true"],
            item["reported"],
            item["counts"],
            item["duplicates"],
        )
    total = Score()
    for score in groups.values():
        total.extend(score)
    groups["all"] = total
    table = markdown(groups)
    report = {
        "command": " ".join(["bench/bench_incidents.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(),
        "settings": vars(args),
        "groups": {
            name: {**s.counts(), "duplicates": s.duplicates, "near": s.counts(True), "clear": s.counts(False)}
            for name, s in groups.items()
        },
        "sequences": items,
        "wall_s": round(time.monotonic() - started, 1),
        "markdown": table,
    }
    write_json(Path(args.out), report)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
