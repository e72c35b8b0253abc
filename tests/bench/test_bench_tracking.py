"""The accuracy harnesses: tracking metrics score what they should, the incident matcher matches what it should."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from bench import bench_incidents, bench_tracking
from bench.incident_metrics import Reported, match, track_log
from bench.tracking_metrics import FrameTracks, hota, score
from datasets import sequence_scenarios as sc
from datasets.scenes import CABLE, PERSON
from datasets.sequences import FrameTruth, TrueIncident, TruthObject, TruthRule
from trtseg.detections import Detections
from trtseg.masks import InstanceMasks

SMALL = (320, 180)


def _object(track_id: int, x: int, y: int = 20, class_id: int = PERSON, w: int = 12, h: int = 30) -> TruthObject:
    return TruthObject(track_id, class_id, x, y, np.ones((h, w), bool), 1.0, (x + w / 2, y + h), {"z": 0.0})


def _two_walkers(frames: int = 40) -> list[FrameTruth]:
    """Two people walking towards each other and past each other, apart in depth (y)."""
    out = []
    for i in range(frames):
        objs = [_object(1, 10 + 6 * i, 20), _object(2, 250 - 6 * i, 70)]
        out.append(FrameTruth(i, i / 25, objs, []))
    return out


def _as_tracks(truth: FrameTruth, ids: dict[int, int]) -> FrameTracks:
    objs = truth.objects
    return FrameTracks(
        np.array([ids[o.track_id] for o in objs], np.int64),
        np.array([o.class_id for o in objs], np.int64),
        np.array([o.box for o in objs], np.float64).reshape(-1, 4),
        [(o.x0, o.y0, o.mask) for o in objs],
    )


def test_a_perfect_tracker_scores_one() -> None:
    truths = _two_walkers()
    result = score(truths, [_as_tracks(t, {1: 7, 2: 9}) for t in truths])
    assert result["IDF1"] == pytest.approx(1.0)
    assert result["MOTA"] == pytest.approx(1.0)
    assert result["HOTA"] > 0.99
    assert result["IDsw"] == 0 and result["FP"] == 0 and result["FN"] == 0


def test_a_tracker_that_swaps_ids_scores_lower() -> None:
    truths = _two_walkers()
    outputs = [_as_tracks(t, {1: 7, 2: 9} if t.index < 20 else {1: 9, 2: 7}) for t in truths]
    result = score(truths, outputs)
    assert result["IDsw"] == 2
    assert result["IDF1"] == pytest.approx(0.5)  # each id right for half the frames
    assert result["HOTA"] < 0.8
    assert result["MOTA"] == pytest.approx(1.0 - 2 / 80)
    fragmented = [_as_tracks(t, {1: 7 + (t.index >= 20) * 100, 2: 9}) for t in truths]  # a new id mid-way
    assert 0.5 < score(truths, fragmented)["IDF1"] < 1.0


def test_misses_and_ignored_objects() -> None:
    truths = _two_walkers(10)
    only_one = [_as_tracks(FrameTruth(t.index, t.t, t.objects[:1], []), {1: 7}) for t in truths]
    result = score(truths, only_one)
    assert result["FN"] == 10 and result["MOTA"] == pytest.approx(0.5)
    hidden = [FrameTruth(t.index, t.t, t.objects[:1], t.objects[1:]) for t in truths]  # 2 too occluded to count
    result = score(hidden, [_as_tracks(t, {1: 7, 2: 9}) for t in truths])
    assert result["FP"] == 0 and result["FN"] == 0 and result["IDF1"] == pytest.approx(1.0)


def test_cables_are_matched_by_mask() -> None:
    band = np.eye(60, dtype=bool) | np.eye(60, k=1, dtype=bool)  # a thin diagonal
    cable = TruthObject(1, CABLE, 0, 0, band, 1.0, (30.0, 60.0))
    other = TruthObject(2, CABLE, 0, 0, band[:, ::-1].copy(), 1.0, (30.0, 60.0))  # the crossing one, same box
    truths = [FrameTruth(i, i / 25, [cable, other], []) for i in range(5)]
    swapped = FrameTracks(
        np.array([5, 6]),
        np.array([CABLE, CABLE]),
        np.array([[0, 0, 60, 60]] * 2, float),
        [(0, 0, other.mask), (0, 0, cable.mask)],
    )
    result = score(truths, [swapped] * 5)
    assert result["IDF1"] == pytest.approx(1.0)  # boxes alone could not tell which is which
    flat = np.zeros((60, 60), bool)
    flat[29:31] = True  # a level cable in the same box: it crosses both, and is neither
    wrong = FrameTracks(swapped.ids, swapped.class_ids, swapped.boxes, [(0, 0, flat)] * 2)
    assert score(truths, [wrong] * 5)["FN"] == 10


def test_hota_agrees_with_trackeval() -> None:
    trackeval = pytest.importorskip("trackeval")
    rng = np.random.default_rng(3)
    gt_ids, tr_ids, sims = [], [], []
    for _ in range(30):
        g = np.sort(rng.choice(6, size=int(rng.integers(1, 5)), replace=False))
        t = np.sort(rng.choice(8, size=int(rng.integers(1, 6)), replace=False))
        gt_ids.append(g)
        tr_ids.append(t)
        sims.append(rng.uniform(0, 1, (len(g), len(t))) * (rng.random((len(g), len(t))) < 0.5))
    ours = hota(gt_ids, tr_ids, sims)
    data = {
        "num_gt_ids": 6,
        "num_tracker_ids": 8,
        "num_timesteps": 30,
        "gt_ids": gt_ids,
        "tracker_ids": tr_ids,
        "similarity_scores": sims,
        "num_gt_dets": sum(map(len, gt_ids)),
        "num_tracker_dets": sum(map(len, tr_ids)),
    }
    theirs = trackeval.metrics.HOTA().eval_sequence(data)
    for key in ("HOTA", "DetA", "AssA"):
        assert ours[key] == pytest.approx(float(np.mean(theirs[key])), abs=1e-9)


def test_peer_tracks_are_read_back(tmp_path: Path) -> None:
    mask = np.zeros((4, 5), bool)
    mask[1:3, 2:4] = True
    bits = base64.b64encode(np.packbits(mask.reshape(-1)).tobytes()).decode()
    path = tmp_path / "peer.jsonl"
    rows = [
        {"ids": [3], "cls": [2], "conf": [0.9], "boxes": [[10, 20, 15, 24]], "masks": [[10, 20, 5, 4, bits]]},
        {"ids": [], "cls": [], "conf": [], "boxes": [], "masks": []},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    first, second = bench_tracking.read_peer(path)
    assert first.ids.tolist() == [3] and first.boxes.shape == (1, 4)
    assert first.masks is not None and np.array_equal(first.masks[0][2], mask)
    assert len(second) == 0


# ----------------------------------------------------------------------------- incidents
RULES = [TruthRule("danger", "presence", CABLE, zone="z", min_outside=0.4)]


def _cable_truths(seconds: float = 10.0, fps: float = 5.0, outside: float = 0.7) -> list[FrameTruth]:
    out = []
    for i in range(int(seconds * fps)):
        obj = _object(1, 50, class_id=CABLE)
        obj.inside = {"z": 1.0 - outside}
        out.append(FrameTruth(i, i / fps, [obj], []))
    return out


def _log_for(truths: list[FrameTruth], track_of: callable) -> dict:
    outputs = [_as_tracks(t, {1: track_of(t.t)}) for t in truths]
    return track_log(truths, outputs)


def test_incident_matching_rules() -> None:
    truths = _cable_truths()
    truth = [TrueIncident("danger", 1, CABLE, 0.0, 9.8, 0.7, 0.4)]
    log = _log_for(truths, lambda t: 5)
    good = Reported("a", "danger", 5, 1.5, 9.8)
    late = Reported("b", "danger", 5, 2.5, 9.8)
    other_rule = Reported("c", "other", 5, 0.2, 9.8)
    s = match([good], truth, RULES, log, truths)
    assert s.counts()["tp"] == 1 and s.counts()["fp"] == 0 and s.duplicates == 0
    s = match([late], truth, RULES, log, truths)
    assert (s.counts()["tp"], s.counts()["fp"], s.counts()["fn"]) == (0, 1, 1)
    s = match([other_rule], truth, RULES, log, truths)
    assert (s.counts()["tp"], s.counts()["fp"], s.counts()["fn"]) == (0, 1, 1)
    s = match([good, Reported("d", "danger", 5, 6.0, 9.8)], truth, RULES, log, truths)
    assert (s.counts()["tp"], s.counts()["fp"], s.duplicates) == (1, 1, 1)


def test_an_incident_must_follow_its_object_half_its_life() -> None:
    truths = _cable_truths()
    truth = [TrueIncident("danger", 1, CABLE, 0.0, 9.8, 0.7, 0.4)]
    # Track 5 is on the cable for the first 40 % of frames, then the log shows another track there.
    log = _log_for(truths, lambda t: 5 if t < 4.0 else 6)
    log[5] += [(t, None) for t in np.arange(4.0, 10.0, 0.2).tolist()]  # track 5 wanders off to nothing
    s = match([Reported("a", "danger", 5, 0.0, 9.8)], truth, RULES, log, truths)
    assert s.counts()["tp"] == 0 and s.counts()["fn"] == 1
    s = match([Reported("a", "danger", 5, 0.0, 3.8)], truth, RULES, log, truths)  # a short life all on it
    assert s.counts()["tp"] == 1


def test_near_threshold_cases_are_reported_apart() -> None:
    truths = _cable_truths(outside=0.38)  # no true incident, 2 points under the threshold
    log = _log_for(truths, lambda t: 5)
    s = match([Reported("a", "danger", 5, 0.0, 9.8)], [], RULES, log, truths)
    assert s.counts(near=True)["fp"] == 1 and s.counts(near=False)["fp"] == 0
    clear = _cable_truths(outside=0.1)
    s = match([], [], RULES, _log_for(clear, lambda t: 5), clear)
    assert s.counts(near=False)["tn"] == 1 and s.counts()["fp"] == 0


class TruthEngine:
    """Stands in for the segmenter: the truth of each frame, in the order the bench asks for frames."""

    def __init__(self, seq: object, fps: float) -> None:
        self.names = {0: "charging_cable", 1: "e_bike", 2: "person"}
        self._frames = seq.frames(fps)  # type: ignore[attr-defined]

    def predict(self, image: np.ndarray, conf: float = 0.25, iou: float = 0.7) -> list[Detections]:
        _, truth = next(self._frames)
        objs = truth.all()
        shape = image.shape[:2]
        return [
            Detections(
                boxes=np.array([o.box for o in objs], np.float32).reshape(-1, 4),
                scores=np.full(len(objs), 0.9, np.float32),
                class_ids=np.array([o.class_id for o in objs], np.int32),
                masks=InstanceMasks.from_crops(shape, [(o.x0, o.y0, o.mask) for o in objs]),
                names=self.names,
                frame_shape=shape,
            )
        ]


def test_incident_bench_with_perfect_detections() -> None:
    pytest.importorskip("trtseg.analytics.camera")
    seq = sc.fraction(4, 0.7, seconds=4.0, size=(640, 360))
    args = bench_incidents.parse_args(["--fps", "5", "--conf", "0.25"])
    args.cache_dir = None  # nothing cached: the stand-in engine answers every frame
    item = bench_incidents.run_sequence(seq, bench_incidents.Detector(args, TruthEngine(seq, 5.0)), args)
    assert item["true"] == 1
    assert item["counts"]["tp"] == 1 and item["counts"]["fp"] == 0 and item["duplicates"] == 0
    camera = bench_incidents.camera_config(sc.dwell(3, 5.0, size=SMALL), 5.0, 0.25)
    assert [r.kind for r in camera.analytics.rules] == ["dwell"]


# ----------------------------------------------------------------------------- tracking bench: cache, plan, goal
def test_detections_and_truth_survive_the_cache(tmp_path: Path) -> None:
    from bench import tracking_cache as cache

    seq = sc.cables(3, seconds=0.2, size=SMALL)
    _, truth = seq.render(2)
    det = TruthEngine(seq, None).predict(np.zeros((SMALL[1], SMALL[0], 3), np.uint8))[0]
    store = cache.SequenceCache("k", tmp_path)
    assert store.missing([0, 2]) == [0, 2]
    store.put(2, det, truth)
    store.save()
    back = cache.SequenceCache("k", tmp_path).load()
    assert back.missing([0, 2]) == [0]
    det2, truth2 = back.get(2)
    np.testing.assert_array_equal(det2.boxes, det.boxes)
    np.testing.assert_array_equal(det2.scores, det.scores)
    assert det2.names == det.names and det2.frame_shape == det.frame_shape
    for (x0, y0, m), (x1, y1, n) in zip(det.masks, det2.masks, strict=True):  # type: ignore[arg-type]
        assert (x0, y0) == (x1, y1) and np.array_equal(m, n)
    assert [o.track_id for o in truth2.all()] == [o.track_id for o in truth.all()]
    for a, b in zip(truth.all(), truth2.all(), strict=True):
        assert a.box == b.box and np.array_equal(a.mask, b.mask) and a.inside == b.inside
    # Keys change with what changes the detections.
    model = tmp_path / "m.onnx"
    model.write_bytes(b"weights")
    key = cache.sequence_key("cables", 3, 10.0, (1280, 720), str(model), 0.1)
    assert key != cache.sequence_key("cables", 3, 10.0, (1280, 720), str(model), 0.25)
    assert key != cache.sequence_key("cables", 4, 10.0, (1280, 720), str(model), 0.1)
    assert cache.peer_key(key, 5.0, {"conf": 0.1}) != cache.peer_key(key, 25.0, {"conf": 0.1})


class _NoEngine:
    def predict(self, *args: object, **kwargs: object) -> list[Detections]:
        raise AssertionError("the cache should have answered")


def test_reuse_cache_tracks_without_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seq = sc.occlusion(5, seconds=2.0, size=SMALL)
    argv = ["--no-peer", "--fps", "5", "--cache-dir", str(tmp_path), "--model", __file__]
    args = bench_tracking.parse_args(argv)
    config = bench_tracking.tracker_config([])
    res = bench_tracking.Resources(args, tmp_path)
    engine = TruthEngine(seq, 5.0)
    monkeypatch.setattr(res, "engine", lambda: engine)
    first = bench_tracking.run_sequence("occlusion", seq, res, args, config)
    assert first["rates"]["5"]["ours"]["GT"] > 0
    args = bench_tracking.parse_args([*argv, "--reuse-cache"])
    monkeypatch.setattr(res, "engine", lambda: _NoEngine())
    again = bench_tracking.run_sequence("occlusion", seq, res, args, config)
    assert again["rates"] == first["rates"] and again["cache"] == first["cache"]
    # With truth for detections the tracker is nearly perfect.
    assert again["rates"]["5"]["ours"]["IDF1"] > 0.9


def test_plan_splits_and_tracker_overrides() -> None:
    args = bench_tracking.parse_args(
        ["--scenarios", "cables", "--seeds", "0", "--heldout-seeds", "7", "--fresh-seeds", "8,9"]
    )
    assert bench_tracking.plan(args) == [
        ("cables", 0, "dev"),
        ("cables", 7, "held-out"),
        ("cables", 8, "fresh"),
        ("cables", 9, "fresh"),
    ]
    config = bench_tracking.tracker_config(["probation_frames=2", 'class_new_track_score={"charging_cable": 0.3}'])
    assert config.probation_frames == 2 and config.class_new_track_score == {"charging_cable": 0.3}
    with pytest.raises(SystemExit):
        bench_tracking.tracker_config(["probation_frames"])


def test_goal_check_asks_a_margin_on_occlusion_and_cables() -> None:
    from bench.tracking_report import goal_check, summary

    def row(ours: float, peer: float) -> dict:
        return {"ours": {"IDF1": ours, "HOTA": ours}, "peer": {"IDF1": peer, "HOTA": peer}}

    report = {
        "sequences": [
            {"sequence": {"name": "cables-s1"}, "split": "dev", "rates": {"5": row(0.90, 0.86)}},
            {"sequence": {"name": "crossing-s1"}, "split": "fresh", "rates": {"5": row(0.90, 0.89)}},
            {"sequence": {"name": "occlusion-s1"}, "split": "held-out", "rates": {"25": row(0.95, 0.90)}},
        ]
    }
    checks = goal_check(report)
    assert [c["met"] for c in checks] == [False, True, True]  # +4 on cables is short of +5; +1 on crossing is enough
    assert "goal met on 2 of 3" in summary({**report, "goal": checks})
