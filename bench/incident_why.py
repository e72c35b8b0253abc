"""Why an incident was missed, false or doubled: a frame-by-frame account around each, from cached frames.

    .venv/bin/python bench/incident_why.py --sequence crossing --seed 7001      # after bench_incidents.py ran it
    .venv/bin/python bench/incident_why.py --sequence long --seed 0 --long-seconds 600

For every miss (FN), false report (FP) and duplicate of one sequence it prints, for each inferred
frame around the true (or reported) opening: the true object's visibility and side of the line, the
best box IoU of a detection of its class with it (0: the detector did not see it) and that
detection's score, the tracker's raw id matched to it and the identity the rules saw (after
``TrackRelinker``). Read with the kinds of cause in mind: *detector* (no detection over the
crossing), *tracker* (the id that crossed is not the one that started), *rule* (the rule's state),
or *matcher* (the report exists and follows the object but was not paired). Frames come from the
cache that ``bench_incidents.py`` fills (the same key), so this takes seconds; ``--tracker KEY=VALUE``
replays with ``TrackerConfig`` overrides, as the bench takes them.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bench_incidents as bi
from bench.incident_metrics import followed, match, reported_from_records, track_log
from bench.tracking_metrics import FrameTracks, box_iou
from datasets import sequence_scenarios as scenarios
from datasets.sequence_truth import true_incidents
from datasets.sequences import line_side
from trtseg.analytics.geometry import side_of_line


class RawRecorder(bi.RecordingTracker):
    """Also keeps the tracker's own ids (the camera relinks them in place afterwards)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.raw: np.ndarray = np.zeros(0, np.int64)

    def update(self, detections: Any, now_s: float) -> Any:
        out = super().update(detections, now_s)
        self.raw = np.array(out.tracker_ids if out.tracker_ids is not None else [], np.int64)
        return out


def build(args: argparse.Namespace) -> Any:
    size = tuple(int(v) for v in args.size.lower().split("x"))
    if args.sequence == "crossing":
        return scenarios.crossing(args.seed, size=size)
    if args.sequence == "long":
        return scenarios.long(args.seed, seconds=args.long_seconds, size=size)
    if args.sequence == "dwell":
        return scenarios.dwell(args.seed, args.value, size=size)
    return scenarios.fraction(args.seed, args.value / 100.0, size=size)


def replay(seq: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Run the sequence through CameraAnalytics as the bench does, keeping every frame's particulars."""
    from trtseg.analytics.camera import CameraAnalytics
    from trtseg.frames import Frame

    camera = bi.camera_config(seq, args.fps, args.conf, args.tracker)
    analytics = CameraAnalytics(camera, dict(enumerate(bi.CLASS_NAMES)))
    recorder = RawRecorder(analytics.tracker)
    analytics.tracker = recorder
    records: list[Any] = []
    frames: list[dict[str, Any]] = []
    blank = None
    for image, det, truth, _ in bi.frames(seq, bi.Detector(args), args):
        if image is None:
            blank = blank if blank is not None else np.zeros((*det.frame_shape[:2], 3), np.uint8)
            image = blank
        records += analytics.update(Frame("bench", truth.index, bi.EPOCH + truth.t, image, pts_s=truth.t), det)
        out = FrameTracks.from_detections(recorder.last)
        frames.append({"truth": truth, "det": det, "out": out, "raw": recorder.raw.copy()})
    records += analytics.close_all(bi.EPOCH + seq.seconds)
    truths = [f["truth"] for f in frames]
    log = track_log(truths, [f["out"] for f in frames], args.cable_iou)
    raw_log = track_log(
        truths,
        [FrameTracks(f["raw"], f["out"].class_ids, f["out"].boxes, f["out"].masks) for f in frames],
        args.cable_iou,
    )
    reported = reported_from_records(records, bi.EPOCH)
    truth_incidents = true_incidents(seq, truths)
    score = match(reported, truth_incidents, seq.rules, log, truths)
    return {
        "frames": frames,
        "log": log,
        "raw_log": raw_log,
        "reported": reported,
        "truth": truth_incidents,
        "score": score,
    }


def _ids_of(log: dict[int, list[tuple[float, int | None]]]) -> dict[tuple[float, int], int]:
    """(time, true object) -> reported id, from a track log."""
    out: dict[tuple[float, int], int] = {}
    for tid, rows in log.items():
        for t, obj in rows:
            if obj is not None:
                out[(round(t, 3), obj)] = tid
    return out


def timeline(seq: Any, run: dict[str, Any], obj: int, t0: float, t1: float) -> list[str]:
    """One line per inferred frame between t0 and t1 about true object ``obj``."""
    actor = next(a for a in seq.actors if a.track_id == obj)
    line = next(iter(seq.lines.values()), None)
    ids, raw_ids = _ids_of(run["log"]), _ids_of(run["raw_log"])
    lines = []
    for f in run["frames"]:
        truth = f["truth"]
        if not t0 - 1e-6 <= truth.t <= t1 + 1e-6:
            continue
        o = next((x for x in truth.all() if x.track_id == obj), None)
        side = line_side(actor.position(truth.t), line, seq.size) if line is not None and actor.present(truth.t) else 0
        det = f["det"]
        best, score, rivals = 0.0, 0.0, 0
        if o is not None and len(det):
            same = np.flatnonzero(np.asarray(det.class_ids) == o.class_id)
            if len(same):
                ious = box_iou(np.array([o.box], np.float64), np.asarray(det.boxes, np.float64)[same])[0]
                k = int(np.argmax(ious))
                best, score, rivals = float(ious[k]), float(det.scores[same[k]]), int((ious >= 0.3).sum())
        others = []
        if o is not None:  # other true objects of its class that overlap it (a merge)
            for x in truth.all():
                if x.track_id != obj and x.class_id == o.class_id:
                    iou = float(box_iou(np.array([o.box], np.float64), np.array([x.box], np.float64))[0, 0])
                    if iou > 0.2:
                        others.append(f"{x.track_id}:{iou:.2f}")
        key = (round(truth.t, 3), obj)
        tid = ids.get(key)
        anchor_side = "."
        if tid is not None and line is not None:
            out = f["out"]
            k = int(np.flatnonzero(out.ids == tid)[0])
            x0, _, x1, y1 = out.boxes[k]
            anchor = ((x0 + x1) / 2.0 / seq.size[0], y1 / seq.size[1])
            anchor_side = f"{side_of_line(anchor, line):+d}"
        lines.append(
            f"  t={truth.t:6.2f} vis={'-' if o is None else f'{o.visibility:.2f}'} side={side:+d} "
            f"det_iou={best:.2f} score={score:.2f} dets>0.3={rivals} raw_id={raw_ids.get(key, '-')} "
            f"id={ids.get(key, '-')} id_side={anchor_side} overlaps=[{' '.join(others)}]"
        )
    return lines


def explain(seq: Any, run: dict[str, Any], before_s: float, after_s: float) -> None:
    score = run["score"]
    log = run["log"]
    print(f"== {seq.name}: true {len(run['truth'])}, reported {len(run['reported'])}, {score.counts()}")
    for x in run["truth"]:
        print(f"  true {x.rule} object={x.track_id} open_s={x.open_s:.2f}")
    for r in sorted(run["reported"], key=lambda r: r.open_s):
        obj, share = followed(log, r)
        print(f"  reported {r.rule} track={r.track_id} open_s={r.open_s:.2f} follows={obj} share={share:.2f}")
    for o in score.outcomes:
        if o.kind == "fn":
            t = o.truth.open_s
            print(f"\nFN rule={o.rule} object={o.truth_object} open_s={t:.2f}")
            near = [r for r in run["reported"] if r.rule == o.rule and abs(r.open_s - t) <= 4.0]
            for r in near:
                obj, share = followed(log, r)
                print(f"  near report: track={r.track_id} open_s={r.open_s:.2f} follows={obj} share={share:.2f}")
            print("\n".join(timeline(seq, run, o.truth_object, t - before_s, t + after_s)))
        elif o.kind == "fp":
            r = o.reported
            print(f"\nFP rule={o.rule} track={r.track_id} open_s={r.open_s:.2f}", end=" ")
            print(f"follows={o.truth_object} share={o.share:.2f}")
            truths = [x for x in run["truth"] if x.track_id == o.truth_object]
            print(f"  true incidents of that object: {[(x.rule, round(x.open_s, 2)) for x in truths]}")
            if o.truth_object is not None:
                print("\n".join(timeline(seq, run, o.truth_object, r.open_s - before_s, r.open_s + after_s)))
    per_key: dict[tuple[Any, str], list[Any]] = defaultdict(list)
    for r in run["reported"]:
        obj, _ = followed(log, r)
        if obj is not None:
            per_key[(obj, r.rule)].append(r)
    true_per_key: dict[tuple[int, str], int] = defaultdict(int)
    for x in run["truth"]:
        true_per_key[(x.track_id, x.rule)] += 1
    for (obj, rule), reps in per_key.items():
        if len(reps) > max(1, true_per_key[(obj, rule)]):
            print(f"\nDUPLICATE object={obj} rule={rule} true={true_per_key[(obj, rule)]}")
            for r in reps:
                print(f"  report track={r.track_id} open_s={r.open_s:.2f} last_s={r.last_s:.2f} closed={r.closed}")
            for a, b in itertools.pairwise(reps):
                print("\n".join(timeline(seq, run, obj, a.last_s - 1.0, b.open_s + 1.0)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequence", choices=bi.GROUPS, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--value", type=float, default=0.0, help="fraction: percent outside; dwell: seconds")
    parser.add_argument("--before", type=float, default=3.0, help="seconds shown before each case")
    parser.add_argument("--after", type=float, default=2.0, help="seconds shown after each case")
    parser.add_argument("--long-seconds", type=float, default=600.0)
    parser.add_argument("--tracker", nargs="*", default=[], metavar="KEY=VALUE", help="TrackerConfig overrides")
    mine = parser.parse_args(argv)
    args = bi.parse_args(["--reuse-cache"])  # the bench's own settings: the same cache key
    for name, value in vars(mine).items():
        setattr(args, name, value)
    seq = build(args)
    explain(seq, replay(seq, args), args.before, args.after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
