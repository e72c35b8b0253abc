"""Retention: clips and key frames by age per camera, a global disk cap oldest first, open incidents kept,
key frames kept unless a key frame retention is set, the callback, failures counted."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from trtseg.clips.layout import ClipLayout
from trtseg.clips.retention import DAY_S, EvidenceRemoved, Retention
from trtseg.config import CameraConfig
from trtseg.config.clips import ClipConfig, EvidenceConfig

NOW = 1_800_000_000.0


class Camera(CameraConfig):
    clips: ClipConfig = Field(default_factory=ClipConfig)


def _camera(camera_id: str, **clips: Any) -> Camera:
    return Camera(id=camera_id, source="rtsp://x/1", site="site A", clips=clips)


def _age(path: Path, days: float) -> None:
    os.utime(path, (NOW - days * DAY_S, NOW - days * DAY_S))


def _clip(root: Path, camera: str, name: str, days: float, incidents: list[str], size: int = 1000) -> Path:
    layout = ClipLayout(root)
    relative = layout.recording("site A", camera, "2026-11-01", name)
    path = layout.resolve(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"m" * size)
    path.with_suffix(".json").write_text(json.dumps({"incident_ids": incidents, "clip": relative}))
    for incident in incidents:
        layout.write_pointer(incident, {"status": "ready", "clip": relative})
    _age(path, days)
    return path


def _keyframe(root: Path, camera: str, name: str, days: float) -> Path:
    path = root / "site_A" / camera / "2026-11-01" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"j" * 100)
    _age(path, days)
    return path


class Setup:
    def __init__(self, tmp_path: Path, cameras: list[Camera], open_ids: set[str] | None = None, **evidence: Any):
        self.clip_dir, self.keyframe_dir = tmp_path / "clips", tmp_path / "keyframes"
        self.removed: list[EvidenceRemoved] = []
        self.open_ids = open_ids or set()
        self.retention = Retention(
            EvidenceConfig(clip_dir=self.clip_dir, **evidence),
            self.keyframe_dir,
            cameras=lambda: cameras,
            open_ids=lambda: self.open_ids,
            on_removed=self.removed.append,
            clock=lambda: NOW,
        )


def test_clips_by_age_per_camera_and_open_incidents_kept(tmp_path: Path) -> None:
    s = Setup(tmp_path, [_camera("cam1"), _camera("cam2", retain_days=3)], open_ids={"open1"}, clip_retain_days=10)
    old1 = _clip(s.clip_dir, "cam1", "old1", 11, ["a", "b"])
    new1 = _clip(s.clip_dir, "cam1", "new1", 9, ["c"])
    old2 = _clip(s.clip_dir, "cam2", "old2", 4, ["d"])  # cam2 keeps 3 days
    kept_open = _clip(s.clip_dir, "cam1", "open", 40, ["open1", "e"])
    gone_camera = _clip(s.clip_dir, "removed_cam", "x", 11, ["f"])  # a removed camera: the global days
    report = s.retention.run()
    assert not old1.exists() and not old1.with_suffix(".json").exists() and new1.exists()
    assert not old2.exists() and not gone_camera.exists()
    assert kept_open.exists(), "an open incident's evidence is never deleted"
    assert report.clips_deleted == 3 and report.kept_open == 1 and report.delete_failures == 0
    assert report.bytes_freed > 3000
    assert len(s.removed) == 1 and sorted(s.removed[0].clip_incidents) == ["a", "b", "d", "f"]
    layout = ClipLayout(s.clip_dir)
    assert layout.read_pointer("a") is None and layout.read_pointer("c") is not None
    assert layout.read_pointer("open1") is not None


def test_disk_cap_deletes_the_oldest_first(tmp_path: Path) -> None:
    s = Setup(tmp_path, [_camera("cam1")], open_ids={"o"}, clip_retain_days=None, max_disk_gb=2500 / 1e9)
    paths = {name: _clip(s.clip_dir, "cam1", name, days, [name], size=1000) for name, days in
             (("d5", 5), ("d4", 4), ("o", 6), ("d3", 3), ("d1", 1))}  # fmt: skip
    report = s.retention.run()
    # ~1 kB each (plus sidecars): down to 2.5 kB means three go, the oldest first, the open one skipped.
    assert not paths["d5"].exists() and not paths["d4"].exists() and not paths["d3"].exists()
    assert paths["o"].exists() and paths["d1"].exists()
    assert report.clips_deleted == 3 and not report.over_cap
    assert s.removed[0].clip_incidents == ["d5", "d4", "d3"]


def test_over_cap_with_nothing_deletable_is_reported(tmp_path: Path) -> None:
    s = Setup(tmp_path, [_camera("cam1")], open_ids={"o"}, max_disk_gb=100 / 1e9)
    _clip(s.clip_dir, "cam1", "o", 1, ["o"])
    assert s.retention.run().over_cap and not s.removed


def test_keyframes_kept_unless_a_keyframe_retention_is_set(tmp_path: Path) -> None:
    s = Setup(tmp_path, [_camera("cam1"), _camera("cam2", keyframe_retain_days=2)], open_ids={"inc3"})
    legacy = _keyframe(s.keyframe_dir, "cam1", "0123abcd_raw.jpg", 400)  # an event's, from before retention
    old_incident = _keyframe(s.keyframe_dir, "cam2", "inc1-open_raw.jpg", 3)
    old_incident_b = _keyframe(s.keyframe_dir, "cam2", "inc1-open_annotated.jpg", 3)
    old_event = _keyframe(s.keyframe_dir, "cam2", "ev9_annotated.jpg", 5)
    fresh = _keyframe(s.keyframe_dir, "cam2", "inc2-close_raw.jpg", 1)
    open_one = _keyframe(s.keyframe_dir, "cam2", "inc3-alert_raw.jpg", 30)
    report = s.retention.run()
    assert legacy.exists(), "no key frame retention for cam1 (nor a global one): kept"
    assert not old_incident.exists() and not old_incident_b.exists() and not old_event.exists()
    assert fresh.exists() and open_one.exists()
    assert report.keyframes_deleted == 3 and report.kept_open == 1
    assert s.removed[0].keyframe_incidents == ["inc1"] and s.removed[0].keyframe_events == ["ev9"]

    everywhere = Setup(tmp_path, [_camera("cam1")], keyframe_retain_days=30)
    everywhere.retention.run()
    assert not legacy.exists(), "an explicit global key frame retention removes old ones too"


def test_cap_counts_keyframes_only_when_asked(tmp_path: Path) -> None:
    cameras = [_camera("cam1")]
    s = Setup(tmp_path, cameras, max_disk_gb=150 / 1e9)
    kf = _keyframe(s.keyframe_dir, "cam1", "inc1-open_raw.jpg", 10)
    _keyframe(s.keyframe_dir, "cam1", "inc2-open_raw.jpg", 1)
    s.retention.run()
    assert kf.exists()
    with_kf = Setup(tmp_path, cameras, max_disk_gb=150 / 1e9, cap_keyframes=True)
    with_kf.retention.run()
    assert not kf.exists() and with_kf.removed[0].keyframe_incidents == ["inc1"]


def test_failures_are_counted_and_the_run_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Setup(tmp_path, [_camera("cam1")], clip_retain_days=1)
    stuck = _clip(s.clip_dir, "cam1", "stuck", 5, ["s"])
    other = _clip(s.clip_dir, "cam1", "other", 5, ["t"])
    unlink = Path.unlink

    def refusing(self: Path, missing_ok: bool = False) -> None:
        if self.name == stuck.name:
            raise PermissionError(13, "Permission denied")
        unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refusing)
    report = s.retention.run()
    assert report.delete_failures == 1 and stuck.exists() and not other.exists()
    assert s.retention.figures["delete_failures"] == 1 and s.removed[0].clip_incidents == ["t"]


def test_nothing_is_deleted_when_open_incidents_are_unknown(tmp_path: Path) -> None:
    s = Setup(tmp_path, [_camera("cam1")], clip_retain_days=1)
    clip = _clip(s.clip_dir, "cam1", "c", 5, ["c"])

    def down() -> set[str]:
        raise ConnectionError("database down")

    s.retention._open_ids = down
    report = s.retention.run()
    assert clip.exists() and report.skipped and "database down" in report.skipped
    assert s.retention.stats()["last_error"]


def test_stale_temporary_files_and_failed_pointers_go(tmp_path: Path) -> None:
    s = Setup(tmp_path, [_camera("cam1")], clip_retain_days=2)
    day = s.clip_dir / "recordings" / "site_A" / "cam1" / "2026-11-01"
    day.mkdir(parents=True)
    stale, fresh = day / ".r1.mp4.ab.tmp", day / ".r2.mp4.cd.tmp"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    _age(stale, 2)
    _age(fresh, 0.01)
    layout = ClipLayout(s.clip_dir)
    layout.write_pointer("failed1", {"status": "failed", "error": "disk full"})
    _age(layout.pointer("failed1"), 3)
    layout.write_pointer("ready1", {"status": "ready", "clip": "recordings/x.mp4"})
    _age(layout.pointer("ready1"), 3)
    s.retention.run()
    assert not stale.exists() and fresh.exists()
    assert layout.read_pointer("failed1") is None and layout.read_pointer("ready1") is not None


def test_start_runs_on_a_thread(tmp_path: Path) -> None:
    s = Setup(tmp_path, [_camera("cam1")])
    s.retention.start(interval_s=0.05)
    try:
        import time

        deadline = time.monotonic() + 5
        while s.retention.figures["runs"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        s.retention.close()
    assert s.retention.figures["runs"] >= 2 and s.retention.stats()["last_run"]["skipped"] is None


@pytest.mark.parametrize("name", ["abc-open_raw.jpg", "abc-close_annotated.jpg"])
def test_keyframe_names(name: str) -> None:
    from trtseg.clips.retention import _owner_of

    assert _owner_of(name) == ("abc", None)
    assert _owner_of("0123_raw.jpg") == (None, "0123")


def test_nothing_is_deleted_while_cameras_are_unknown(tmp_path: Path) -> None:
    s = Setup(tmp_path, [], clip_retain_days=1)
    clip = _clip(s.clip_dir, "cam1", "c", 5, ["c"])
    s.retention._cameras = lambda: None
    report = s.retention.run()
    assert clip.exists() and report.skipped == "cameras not known yet"


def test_open_ids_from_a_real_store(tmp_path: Path) -> None:
    """open_ids_of pages through the incident and event stores (SQLite here) for the open ones."""
    from dataclasses import replace

    from tests.db.conftest import record
    from tests.db.incident_helpers import incident
    from trtseg.clips.retention import open_ids_of
    from trtseg.db import EventStore

    store = EventStore(f"sqlite:///{tmp_path / 'e.db'}")
    store.migrate()
    try:
        open_incident, closed_incident = incident("inc-open"), incident("inc-closed")
        closed_incident = replace(closed_incident, status="closed", ended_at=closed_incident.last_seen_at)
        store.write_batch([record(event_id="ev-open"), record(event_id="ev-closed", status="closed")], [])
        store.incidents.upsert([open_incident, closed_incident])
        assert open_ids_of(store)() == {"inc-open", "ev-open"}
    finally:
        store.close()
